package packet

import (
	"encoding/binary"
	"fmt"
	"net"
)

// EtherTypes used by this package.
const (
	EtherTypeIPv4  uint16 = 0x0800
	EtherTypeARP   uint16 = 0x0806
	EtherTypeVLAN  uint16 = 0x8100 // 802.1Q customer tag
	EtherTypeQinQ  uint16 = 0x88a8 // 802.1ad service tag
	EtherTypeIPv6  uint16 = 0x86dd
	EtherTypeLocal uint16 = 0x88b5 // IEEE local experimental 1
)

// Ethernet is an Ethernet II header with optional VLAN tags.
type Ethernet struct {
	Dst, Src net.HardwareAddr
	// Tags are VLAN tags, outermost first, placed after the source address.
	Tags []VLAN
	// Type is the EtherType after the tags; nil derives it from the next
	// layer (IPv4 or IPv6).
	Type *uint16
}

// VLAN is an 802.1Q or 802.1ad tag.
type VLAN struct {
	// TPID is the tag protocol identifier; 0 means EtherTypeVLAN.
	TPID uint16
	PCP  uint8  // priority code point, 3 bits
	DEI  bool   // drop eligible indicator
	ID   uint16 // VLAN identifier, 12 bits
}

// TCI returns the tag control information: PCP, DEI and VID.
func (v VLAN) TCI() uint16 {
	tci := uint16(v.PCP&7)<<13 | v.ID&0xfff
	if v.DEI {
		tci |= 1 << 12
	}
	return tci
}

func (e *Ethernet) encode(payload []byte, ctx context) ([]byte, error) {
	if len(e.Dst) != 6 || len(e.Src) != 6 {
		return nil, fmt.Errorf("MAC addresses must have 6 bytes (dst %d, src %d)", len(e.Dst), len(e.Src))
	}
	var typ uint16
	switch {
	case e.Type != nil:
		typ = *e.Type
	default:
		n, ok := ctx.next.(etherTypeLayer)
		if !ok {
			return nil, fmt.Errorf("EtherType not set and next layer %T has none", ctx.next)
		}
		typ = n.etherType()
	}
	b := make([]byte, 0, 14+4*len(e.Tags)+len(payload))
	b = append(b, e.Dst...)
	b = append(b, e.Src...)
	for _, t := range e.Tags {
		tpid := t.TPID
		if tpid == 0 {
			tpid = EtherTypeVLAN
		}
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, t.TCI())
	}
	b = binary.BigEndian.AppendUint16(b, typ)
	return append(b, payload...), nil
}
