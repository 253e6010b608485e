package nft

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// libraryDecodeExprs is how Kernel decoded rule expressions before
// decodeExprs: with google/nftables' own decoders (expr.Unmarshal). Tests
// hold decodeExprs to it.
func libraryDecodeExprs(fam byte, b []byte) (out []expr.Any, err error) {
	defer func() {
		// The library indexes some values without checking their length.
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("library decoder panicked: %v", r)
		}
	}()
	list, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil, err
	}
	for list.Next() {
		ad, err := netlink.NewAttributeDecoder(list.Bytes())
		if err != nil {
			return nil, err
		}
		ad.ByteOrder = binary.BigEndian
		var name string
		var data []byte
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_EXPR_NAME:
				name = ad.String()
			case unix.NFTA_EXPR_DATA:
				data = ad.Bytes()
			}
		}
		if err := ad.Err(); err != nil {
			return nil, err
		}
		var e expr.Any
		switch name {
		case "meta":
			e = &expr.Meta{}
		case "payload":
			e = &expr.Payload{}
		case "cmp":
			e = &expr.Cmp{}
		case "bitwise":
			e = &expr.Bitwise{}
		case "ct":
			e = &expr.Ct{}
		case "range":
			e = &expr.Range{}
		case "lookup":
			e = &expr.Lookup{}
		case "counter":
			e = &expr.Counter{}
		case "log":
			e = &expr.Log{}
		case "objref":
			e = &expr.Objref{}
		case "immediate":
			e = &expr.Immediate{}
		default:
			return nil, fmt.Errorf("unsupported expression %q", name)
		}
		if err := expr.Unmarshal(fam, data, e); err != nil {
			return nil, fmt.Errorf("expression %q: %w", name, err)
		}
		// As the library's own list decoder: an immediate into the verdict
		// register without a value is a verdict.
		if imm, ok := e.(*expr.Immediate); ok && imm.Register == unix.NFT_REG_VERDICT && len(imm.Data) == 0 {
			e = &expr.Verdict{}
			if err := expr.Unmarshal(fam, data, e); err != nil {
				return nil, fmt.Errorf("verdict: %w", err)
			}
		}
		out = append(out, e)
	}
	return out, list.Err()
}
