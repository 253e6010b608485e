package cniconf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
)

// PluginType is the "type" of nftwarden-cni's entry: the binary's name in
// the runtime's CNI bin directory.
const PluginType = "nftwarden-cni"

// conflist is a network configuration list as read: the top-level keys in
// file order with their values untouched, and the plugins apart.
type conflist struct {
	keys    []string
	values  map[string]json.RawMessage
	plugins []json.RawMessage
	// single: read from a single-plugin configuration and converted.
	single bool
}

// parseConflist reads a .conflist, or a single-plugin configuration (no
// "plugins") converted as libcni's ConfListFromConf does: cniVersion and name
// lifted to the list, the configuration its only plugin.
func parseConflist(data []byte) (*conflist, error) {
	keys, values, err := decodeObject(data)
	if err != nil {
		return nil, err
	}
	l := &conflist{keys: keys, values: values}
	raw, ok := values["plugins"]
	if !ok {
		single := &conflist{values: map[string]json.RawMessage{}, plugins: []json.RawMessage{json.RawMessage(data)}, single: true}
		for _, k := range []string{"cniVersion", "name"} {
			if v, ok := values[k]; ok {
				single.keys = append(single.keys, k)
				single.values[k] = v
			}
		}
		single.keys = append(single.keys, "plugins")
		return single, nil
	}
	if err := json.Unmarshal(raw, &l.plugins); err != nil {
		return nil, fmt.Errorf("\"plugins\" is not a list: %w", err)
	}
	for i, p := range l.plugins {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(p, &obj); err != nil || obj == nil {
			return nil, fmt.Errorf("plugin %d is not an object", i)
		}
	}
	return l, nil
}

// decodeObject reads a JSON object's keys in order and their raw values.
func decodeObject(data []byte) ([]string, map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, nil, errors.New("not a JSON object")
	}
	var keys []string
	values := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("not JSON: %w", err)
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, fmt.Errorf("key %q: %w", key, err)
		}
		if _, dup := values[key]; !dup {
			keys = append(keys, key)
		}
		values[key] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, fmt.Errorf("not JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, errors.New("not JSON: data after the object")
	}
	return keys, values, nil
}

// isOurs reports whether a plugin entry is nftwarden-cni's.
func isOurs(plugin json.RawMessage) bool {
	var p struct {
		Type string `json:"type"`
	}
	return json.Unmarshal(plugin, &p) == nil && p.Type == PluginType
}

// hasOurs reports whether the list holds nftwarden-cni.
func (l *conflist) hasOurs() bool {
	for _, p := range l.plugins {
		if isOurs(p) {
			return true
		}
	}
	return false
}

// withoutOurs is the list without nftwarden-cni's entries.
func (l *conflist) withoutOurs() *conflist {
	out := &conflist{keys: l.keys, values: l.values, single: l.single}
	for _, p := range l.plugins {
		if !isOurs(p) {
			out.plugins = append(out.plugins, p)
		}
	}
	return out
}

// marshal writes the list with two-space indentation, keys in their order.
func (l *conflist) marshal() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range l.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		name, _ := json.Marshal(k)
		b.Write(name)
		b.WriteByte(':')
		if k != "plugins" {
			b.Write(l.values[k])
			continue
		}
		b.WriteByte('[')
		for j, p := range l.plugins {
			if j > 0 {
				b.WriteByte(',')
			}
			b.Write(p)
		}
		b.WriteByte(']')
	}
	b.WriteByte('}')
	var out bytes.Buffer
	if err := json.Indent(&out, b.Bytes(), "", "  "); err != nil {
		return nil, fmt.Errorf("encode the conflist: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// sameAs reports whether two lists hold the same JSON.
func (l *conflist) sameAs(o *conflist) bool {
	a, errA := l.marshal()
	b, errB := o.marshal()
	if errA != nil || errB != nil {
		return false
	}
	var va, vb any
	return json.Unmarshal(a, &va) == nil && json.Unmarshal(b, &vb) == nil && reflect.DeepEqual(va, vb)
}
