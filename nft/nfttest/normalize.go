package nfttest

import (
	"regexp"
	"sort"
	"strings"
)

var (
	counterRE = regexp.MustCompile(`counter packets \d+ bytes \d+`)
	// namedCounterRE is the values line of a named counter's block.
	namedCounterRE = regexp.MustCompile(`^packets \d+ bytes \d+$`)
)

// Normalize rewrites an `nft list table` listing so that two listings of the
// same content compare equal: indentation and blank lines are canonical, the
// blocks (named objects, sets, maps, chains) of each table are sorted, set
// elements are put on one line in sorted order, and counter values (of rules
// and of named counters) are zeroed. Rule order within a
// chain is kept: it is meaningful.
func Normalize(listing string) string {
	var (
		out    []string
		blocks []string // blocks of the current table
		cur    []string // lines of the current block
		depth  int
	)
	lines := joinElements(strings.Split(listing, "\n"))
	for _, raw := range lines {
		line := strings.TrimSpace(raw)
		if line == "" {
			continue
		}
		line = counterRE.ReplaceAllString(line, "counter packets 0 bytes 0")
		line = namedCounterRE.ReplaceAllString(line, "packets 0 bytes 0")
		opens := strings.HasSuffix(line, "{")
		closes := line == "}"
		if closes {
			depth--
		}
		text := strings.Repeat("\t", max(depth, 0)) + line
		switch {
		case depth == 0:
			if closes {
				sort.Strings(blocks)
				out = append(out, blocks...)
				blocks = nil
			}
			out = append(out, text)
		case depth == 1 && opens:
			cur = []string{text}
		case depth == 1 && closes:
			cur = append(cur, text)
			blocks = append(blocks, strings.Join(cur, "\n"))
			cur = nil
		case cur != nil:
			cur = append(cur, text)
		default:
			blocks = append(blocks, text)
		}
		if opens {
			depth++
		}
	}
	return strings.Join(out, "\n") + "\n"
}

// joinElements puts every "elements = { ... }" on one line with its
// elements sorted.
func joinElements(lines []string) []string {
	var out []string
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(line, "elements = {") {
			out = append(out, lines[i])
			continue
		}
		body := strings.TrimPrefix(line, "elements = {")
		for !strings.HasSuffix(strings.TrimSpace(body), "}") && i+1 < len(lines) {
			i++
			body += " " + strings.TrimSpace(lines[i])
		}
		body = strings.TrimSuffix(strings.TrimSpace(body), "}")
		var elems []string
		for _, e := range strings.Split(body, ",") {
			if e = strings.Join(strings.Fields(e), " "); e != "" {
				elems = append(elems, e)
			}
		}
		sort.Strings(elems)
		out = append(out, "elements = { "+strings.Join(elems, ", ")+" }")
	}
	return out
}
