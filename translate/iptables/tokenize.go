package iptables

import "fmt"

// maxParam is the longest argument iptables-restore accepts (its
// parameter buffer).
const maxParam = 1023

// splitLine splits one restore line into arguments the way
// iptables-restore does: whitespace separates arguments; a double quote
// opens a quoted part in which a backslash escapes the next character and
// whitespace is kept; the closing quote ends the argument. Outside quotes
// backslashes and single quotes are ordinary characters.
func splitLine(line string) ([]string, error) {
	var (
		args    []string
		buf     []byte
		inQuote bool
		escaped bool
	)
	for i := 0; i < len(line); i++ {
		c := line[i]
		if inQuote {
			switch {
			case escaped:
				buf = append(buf, c)
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inQuote = false
				args = append(args, string(buf))
				buf = buf[:0]
			default:
				buf = append(buf, c)
			}
		} else {
			switch c {
			case '"':
				inQuote = true
			case ' ', '\t', '\n', '\r':
				if len(buf) > 0 {
					args = append(args, string(buf))
					buf = buf[:0]
				}
			default:
				buf = append(buf, c)
			}
		}
		if len(buf) > maxParam {
			return nil, fmt.Errorf("parameter too long")
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unterminated quote")
	}
	if len(buf) > 0 {
		args = append(args, string(buf))
	}
	return args, nil
}
