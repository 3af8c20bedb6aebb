package ir

// StmtFields returns the Fields statement s reads (nil for statements that
// read none). Code that needs to know what a ruleset reads — whether it
// uses conntrack keys, for one — goes through it; a new statement type
// that reads Fields belongs here.
func StmtFields(s Stmt) []Field {
	switch s := s.(type) {
	case *Match:
		return []Field{s.Field}
	case *Lookup:
		return s.Key
	case *VerdictMap:
		return s.Key
	case *MetaSetMap:
		return s.Key
	}
	return nil
}
