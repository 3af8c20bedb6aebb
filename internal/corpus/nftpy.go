// Package corpus reads the upstream netfilter test corpora that the project
// runs its conformance checks against: nftables' tests/py rule files (.t)
// and iptables' extension tests.
package corpus

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// Table is a `*family;name;chains` line of a .t file.
type Table struct {
	Family string
	Name   string
	Chains []string
}

// Decl is a set (`!`), element (`?`) or object (`%`) line.
type Decl struct {
	Line int
	Kind byte   // '!', '?' or '%'
	Name string // the set or object name
	Body string // the rest of the declaration
	OK   bool
}

// Case is one rule line of a .t file.
type Case struct {
	File string
	Line int
	Rule string
	// OK is true for `;ok` lines: nft accepts the rule.
	OK bool
	// Listed is nft's listing of the rule when it differs from Rule.
	Listed string
	// Disabled marks lines upstream skips by default (a leading '-').
	Disabled bool
	// Tables are the tables (and chains) the rule goes into.
	Tables []Table
	// Decls are the set, element and object declarations in effect.
	Decls []Decl
}

// NftFile is a parsed tests/py .t file.
type NftFile struct {
	Path string
	// Chains maps a chain name to its definition, e.g.
	// "input" → "type filter hook input priority 0".
	Chains map[string]string
	Cases  []Case
}

// ReadNftFile parses a tests/py .t file.
func ReadNftFile(path string) (*NftFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	nf := &NftFile{Path: path, Chains: map[string]string{}}
	var tables []Table
	var decls []Decl
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		disabled := false
		if text[0] == '-' {
			disabled = true
			text = strings.TrimSpace(text[1:])
		}
		switch text[0] {
		case ':':
			name, def, ok := strings.Cut(text[1:], ";")
			if !ok {
				return nil, fmt.Errorf("%s:%d: chain line without ';'", path, line)
			}
			nf.Chains[name] = def
			continue
		case '*':
			parts := strings.Split(text[1:], ";")
			if len(parts) != 3 {
				return nil, fmt.Errorf("%s:%d: table line wants family;name;chains", path, line)
			}
			t := Table{Family: parts[0], Name: parts[1], Chains: strings.Split(parts[2], ",")}
			tables = appendTable(tables, t)
			continue
		case '!', '?', '%':
			body, status := splitStatus(text[1:])
			name, rest, _ := strings.Cut(body, " ")
			decls = append(decls, Decl{Line: line, Kind: text[0], Name: name, Body: rest, OK: status == "ok"})
			continue
		}
		rule, status, listed := splitCase(text)
		if status != "ok" && status != "fail" {
			return nil, fmt.Errorf("%s:%d: status %q is neither ok nor fail", path, line, status)
		}
		nf.Cases = append(nf.Cases, Case{
			File: path, Line: line, Rule: rule, OK: status == "ok", Listed: listed,
			Disabled: disabled, Tables: append([]Table(nil), tables...),
			Decls: append([]Decl(nil), decls...),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return nf, nil
}

// appendTable adds t, replacing a table of the same family and name.
func appendTable(tables []Table, t Table) []Table {
	for i := range tables {
		if tables[i].Family == t.Family && tables[i].Name == t.Name {
			tables[i] = t
			return tables
		}
	}
	return append(tables, t)
}

// splitStatus splits "body;status" at the last ';'.
func splitStatus(s string) (body, status string) {
	i := strings.LastIndexByte(s, ';')
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i+1:]
}

// splitCase splits "rule;status[;listed]". Rules contain ';' only inside
// braces or quotes, so the split is done outside both.
func splitCase(s string) (rule, status, listed string) {
	var fields []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '{':
			depth++
		case c == '}':
			depth--
		case c == ';' && depth == 0:
			fields = append(fields, s[start:i])
			start = i + 1
		}
	}
	fields = append(fields, s[start:])
	rule = strings.TrimSpace(fields[0])
	if len(fields) > 1 {
		status = strings.TrimSpace(fields[1])
	}
	if len(fields) > 2 {
		listed = strings.TrimSpace(strings.Join(fields[2:], ";"))
	}
	return rule, status, listed
}
