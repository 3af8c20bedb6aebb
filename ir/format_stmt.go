package ir

import (
	"fmt"
	"strings"
)

// formatStateful prints the statements of stmt kinds beyond match, counter
// and verdict the way nft 1.0.6 lists them.
func formatStateful(s Stmt) string {
	switch s := s.(type) {
	case *Limit:
		return s.String()
	case *Quota:
		return s.String()
	case *Log:
		return s.String()
	case *MetaSet:
		return s.String()
	}
	return fmt.Sprintf("%T", s)
}

// LimitUnitName returns nft's name for a limit unit in seconds.
func LimitUnitName(unit uint64) string {
	switch unit {
	case LimitSecond:
		return "second"
	case LimitMinute:
		return "minute"
	case LimitHour:
		return "hour"
	case LimitDay:
		return "day"
	case LimitWeek:
		return "week"
	}
	return "error"
}

// ByteRate splits a byte count into nft's largest exact unit (bytes,
// kbytes or mbytes), as nft's get_rate does.
func ByteRate(n uint64) (uint64, string) {
	units := []string{"bytes", "kbytes", "mbytes"}
	i := 0
	for ; i < len(units)-1; i++ {
		if n%1024 != 0 {
			break
		}
		n /= 1024
	}
	return n, units[i]
}

// String returns the statement in nft syntax.
func (l *Limit) String() string {
	over := ""
	if l.Over {
		over = "over "
	}
	if !l.Bytes {
		s := fmt.Sprintf("limit rate %s%d/%s", over, l.Rate, LimitUnitName(l.Unit))
		if l.Burst != 5 && l.Burst != 0 {
			s += fmt.Sprintf(" burst %d packets", l.Burst)
		}
		return s
	}
	r, u := ByteRate(l.Rate)
	s := fmt.Sprintf("limit rate %s%d %s/%s", over, r, u, LimitUnitName(l.Unit))
	if l.Burst != 0 {
		b, bu := ByteRate(uint64(l.Burst))
		s += fmt.Sprintf(" burst %d %s", b, bu)
	}
	return s
}

// String returns the statement in nft syntax.
func (q *Quota) String() string {
	over := ""
	if q.Over {
		over = "over "
	}
	n, u := ByteRate(q.Bytes)
	s := fmt.Sprintf("quota %s%d %s", over, n, u)
	if q.Used != 0 {
		un, uu := ByteRate(q.Used)
		s += fmt.Sprintf(" used %d %s", un, uu)
	}
	return s
}

// LogLevelName returns nft's name of a log level.
func LogLevelName(level uint32) string {
	names := []string{"emerg", "alert", "crit", "err", "warn", "notice", "info", "debug", "audit"}
	if int(level) < len(names) {
		return names[level]
	}
	return fmt.Sprintf("%d", level)
}

// String returns the statement in nft syntax.
func (l *Log) String() string {
	var b strings.Builder
	b.WriteString("log")
	if l.HasPrefix {
		b.WriteString(" prefix " + quote(l.Prefix))
	}
	if l.HasGroup {
		fmt.Fprintf(&b, " group %d", l.Group)
		if l.Snaplen != 0 {
			fmt.Fprintf(&b, " snaplen %d", l.Snaplen)
		}
		if l.QThresh != 0 {
			fmt.Fprintf(&b, " queue-threshold %d", l.QThresh)
		}
	}
	if l.HasLevel && l.Level != LogDefault {
		b.WriteString(" level " + LogLevelName(l.Level))
	}
	switch {
	case l.Flags&LogAllFlags == LogAllFlags:
		b.WriteString(" flags all")
	case l.Flags != 0:
		var tcp []string
		if l.Flags&LogTCPSeq != 0 {
			tcp = append(tcp, "sequence")
		}
		if l.Flags&LogTCPOpt != 0 {
			tcp = append(tcp, "options")
		}
		if len(tcp) > 0 {
			b.WriteString(" flags tcp " + strings.Join(tcp, ","))
		}
		if l.Flags&LogIPOpt != 0 {
			b.WriteString(" flags ip options")
		}
		if l.Flags&LogUID != 0 {
			b.WriteString(" flags skuid")
		}
		if l.Flags&LogMACDecode != 0 {
			b.WriteString(" flags ether")
		}
	}
	return b.String()
}

// String returns the statement in nft syntax.
func (m *MetaSet) String() string {
	v := m.Value
	switch m.Key {
	case MetaMark, MetaPriority:
		if len(v) == 4 {
			return fmt.Sprintf("meta %s set 0x%08x", MetaName(m.Key), uint32(v[0])|uint32(v[1])<<8|uint32(v[2])<<16|uint32(v[3])<<24)
		}
	}
	return fmt.Sprintf("meta %s set 0x%x", MetaName(m.Key), v)
}

var (
	icmpCodes   = map[uint8]string{0: "net-unreachable", 1: "host-unreachable", 2: "prot-unreachable", 3: "port-unreachable", 9: "net-prohibited", 10: "host-prohibited", 13: "admin-prohibited"}
	icmpv6Codes = map[uint8]string{0: "no-route", 1: "admin-prohibited", 3: "addr-unreachable", 4: "port-unreachable", 5: "policy-fail", 6: "reject-route"}
	icmpxCodes  = map[uint8]string{0: "no-route", 1: "port-unreachable", 2: "host-unreachable", 3: "admin-prohibited"}
)

func codeName(names map[uint8]string, c uint8) string {
	if n, ok := names[c]; ok {
		return n
	}
	return fmt.Sprintf("%d", c)
}

// reject prints a reject statement as nft 1.0.6 does: the family's default
// (icmp port-unreachable in ip, icmpv6 port-unreachable in ip6, icmpx
// port-unreachable elsewhere) as a bare "reject".
func (p *printer) reject(r *Reject) string {
	switch r.Type {
	case RejectTCPReset:
		return "reject with tcp reset"
	case RejectICMPXUnreach:
		if r.Code == 1 && p.fam != FamilyIPv4 && p.fam != FamilyIPv6 {
			return "reject"
		}
		return "reject with icmpx " + codeName(icmpxCodes, r.Code)
	case RejectICMPUnreach:
		switch {
		case p.fam == FamilyIPv4 && r.Code == 3, p.fam == FamilyIPv6 && r.Code == 4:
			return "reject"
		case p.fam == FamilyIPv6 || p.l3 == "ip6":
			return "reject with icmpv6 " + codeName(icmpv6Codes, r.Code)
		}
		return "reject with icmp " + codeName(icmpCodes, r.Code)
	}
	return fmt.Sprintf("reject type %d code %d", r.Type, r.Code)
}
