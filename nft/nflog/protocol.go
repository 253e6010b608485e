package nflog

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The nfnetlink_log protocol (linux/netfilter/nfnetlink_log.h). x/sys/unix
// does not carry these constants.
const (
	msgPacket = unix.NFNL_SUBSYS_ULOG << 8   // | NFULNL_MSG_PACKET (0)
	msgConfig = unix.NFNL_SUBSYS_ULOG<<8 | 1 // NFULNL_MSG_CONFIG

	// Attributes of a packet message (enum nfulnl_attr_type).
	attrTimestamp = 3  // NFULA_TIMESTAMP: be64 seconds, be64 microseconds
	attrPayload   = 9  // NFULA_PAYLOAD: the packet from its network header
	attrPrefix    = 10 // NFULA_PREFIX: NUL-terminated
	attrSeq       = 12 // NFULA_SEQ: be32, the group's own sequence (with cfgFlagSeq)

	// Attributes of a config message (enum nfulnl_attr_config).
	attrCfgCmd        = 1 // NFULA_CFG_CMD: u8 command
	attrCfgMode       = 2 // NFULA_CFG_MODE: be32 copy range, u8 copy mode, u8 pad
	attrCfgBufSize    = 3 // NFULA_CFG_NLBUFSIZ: be32 bytes of the kernel's batch
	attrCfgTimeout    = 4 // NFULA_CFG_TIMEOUT: be32, 1/100 s
	attrCfgQThreshold = 5 // NFULA_CFG_QTHRESH: be32 packets per batch
	attrCfgFlags      = 6 // NFULA_CFG_FLAGS: be16

	cmdBind    = 1 // NFULNL_CFG_CMD_BIND
	copyPacket = 2 // NFULNL_COPY_PACKET
	cfgFlagSeq = 1 // NFULNL_CFG_F_SEQ: number the packets of the group
)

// nfgenmsgLen is the size of struct nfgenmsg, which starts every nfnetlink
// message: family, version, resource id (the group, big endian).
const nfgenmsgLen = 4

// configMessage binds the group and sets how the kernel copies and batches
// its packets, in one request: the kernel creates the group's instance for
// the bind command and then applies the other attributes to it.
func configMessage(cfg Config) (netlink.Message, error) {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.Uint8(attrCfgCmd, cmdBind)
	mode := make([]byte, 6)
	binary.BigEndian.PutUint32(mode, cfg.CopyRange)
	mode[4] = copyPacket
	ae.Bytes(attrCfgMode, mode)
	ae.Uint32(attrCfgBufSize, cfg.KernelBatchBytes)
	ae.Uint32(attrCfgTimeout, uint32(cfg.FlushTimeout/(10*time.Millisecond)))
	ae.Uint32(attrCfgQThreshold, cfg.QueueThreshold)
	ae.Uint16(attrCfgFlags, cfgFlagSeq)
	attrs, err := ae.Encode()
	if err != nil {
		return netlink.Message{}, fmt.Errorf("nflog: encode the configuration of group %d: %w", cfg.Group, err)
	}
	data := make([]byte, nfgenmsgLen, nfgenmsgLen+len(attrs))
	data[0] = unix.AF_UNSPEC
	data[1] = unix.NFNETLINK_V0
	binary.BigEndian.PutUint16(data[2:4], cfg.Group)
	return netlink.Message{
		Header: netlink.Header{Type: msgConfig, Flags: netlink.Request | netlink.Acknowledge},
		Data:   append(data, attrs...),
	}, nil
}

// packetMessage is what one packet message of the group carries.
type packetMessage struct {
	event  Event
	seq    uint32
	hasSeq bool
}

// decodePacketMessage reads a packet message; received is the time to use
// when the kernel sent no timestamp (it sends one only for packets that
// carry one, e.g. not for most forwarded packets).
func decodePacketMessage(data []byte, received time.Time) (packetMessage, error) {
	var pm packetMessage
	if len(data) < nfgenmsgLen {
		return pm, fmt.Errorf("nflog: packet message of %d bytes", len(data))
	}
	ad, err := netlink.NewAttributeDecoder(data[nfgenmsgLen:])
	if err != nil {
		return pm, fmt.Errorf("nflog: packet message: %w", err)
	}
	ad.ByteOrder = binary.BigEndian
	var payload []byte
	for ad.Next() {
		switch ad.Type() {
		case attrPrefix:
			pm.event.Prefix = ad.String()
		case attrPayload:
			payload = ad.Bytes()
		case attrSeq:
			pm.seq, pm.hasSeq = ad.Uint32(), true
		case attrTimestamp:
			if b := ad.Bytes(); len(b) == 16 {
				sec, usec := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
				pm.event.Time = time.Unix(int64(sec), int64(usec)*int64(time.Microsecond))
			}
		}
	}
	if err := ad.Err(); err != nil {
		return pm, fmt.Errorf("nflog: packet message: %w", err)
	}
	if pm.event.Time.IsZero() {
		pm.event.Time = received
	}
	if payload == nil {
		return pm, fmt.Errorf("nflog: packet message without payload (prefix %q)", pm.event.Prefix)
	}
	if err := parsePacket(payload, &pm.event); err != nil {
		return pm, fmt.Errorf("%w (prefix %q)", err, pm.event.Prefix)
	}
	return pm, nil
}
