package nflog

import (
	"errors"
	"fmt"
	"time"

	gonflog "github.com/florianl/go-nflog/v2"
)

// errNoPayload: the kernel sent a packet message without the packet (a copy
// mode other than CopyPacket, which the Reader never sets).
var errNoPayload = errors.New("nflog: packet message without payload")

// eventOf turns the attributes go-nflog decoded from one packet message into
// an Event; received is the time to use when the kernel sent no timestamp (it
// sends one only for packets that carry one, e.g. not for most forwarded
// packets).
func eventOf(a gonflog.Attribute, received time.Time) (Event, error) {
	ev := Event{Time: received}
	if a.Prefix != nil {
		ev.Prefix = *a.Prefix
	}
	if a.Timestamp != nil {
		ev.Time = *a.Timestamp
	}
	if a.Payload == nil {
		return ev, fmt.Errorf("%w (prefix %q)", errNoPayload, ev.Prefix)
	}
	if err := parsePacket(*a.Payload, &ev); err != nil {
		return ev, fmt.Errorf("%w (prefix %q)", err, ev.Prefix)
	}
	return ev, nil
}
