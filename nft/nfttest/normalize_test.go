package nfttest

import "testing"

func TestNormalize(t *testing.T) {
	a := `table inet t {
	set b {
		type ipv4_addr
		elements = { 198.18.0.2, 198.18.0.1,
			     198.18.0.3 }
	}

	chain c {
		counter packets 12 bytes 900 drop
		accept
	}
	set a {
		type ipv4_addr
	}
	counter n {
		packets 3 bytes 99
	}
}
`
	b := `table inet t {
    set a {
        type ipv4_addr
    }
    chain c {
        counter packets 0 bytes 0 drop
        accept
    }
    set b {
        type ipv4_addr
        elements = { 198.18.0.1, 198.18.0.3, 198.18.0.2 }
    }
    counter n {
        packets 0 bytes 0
    }
}`
	if Normalize(a) != Normalize(b) {
		t.Errorf("listings of the same content normalize differently:\n%s\n---\n%s", Normalize(a), Normalize(b))
	}
	// Rule order is meaningful and must survive.
	c := `table inet t {
	chain c {
		accept
		counter packets 0 bytes 0 drop
	}
}`
	if Normalize(c) == Normalize(`table inet t {
	chain c {
		counter packets 0 bytes 0 drop
		accept
	}
}`) {
		t.Error("rule order was lost")
	}
}
