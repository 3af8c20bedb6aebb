package main

import "testing"

func TestReplacesRuleset(t *testing.T) {
	for _, c := range []struct {
		text string
		want bool
	}{
		{"flush ruleset\ntable ip t {}\n", true},
		{"# rules\n\n  flush ruleset # all of it\ntable ip t {}\n", true},
		{"flush ruleset; table ip t {}\n", true},
		{"\tflush   ruleset\n", true},
		{"flush ruleset ip\ntable ip t {}\n", false}, // one family only
		{"table ip t {}\nflush ruleset\n", false},
		{"flush table ip t\n", false},
		{"include \"rules.nft\"\n", false},
		{"", false},
		{"# only a comment\n", false},
		{"define X = 1\nflush ruleset\n", false},
	} {
		if got := replacesRuleset(c.text); got != c.want {
			t.Errorf("replacesRuleset(%q) = %v, want %v", c.text, got, c.want)
		}
	}
}
