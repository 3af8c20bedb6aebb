package oracle

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
)

// Clear removes every table from the receiver but the oracle's own (its
// observers and the table that keeps the receiver quiet): what Load("")
// leaves, without running nft. The observers' counters go on counting.
func (o *Oracle) Clear() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	c, err := nftables.New(nftables.WithNetNSFd(int(o.receiver.File().Fd())))
	if err != nil {
		return fmt.Errorf("oracle: nftables connection: %w", err)
	}
	defer c.CloseLasting()
	tables, err := c.ListTables()
	if err != nil {
		return fmt.Errorf("oracle: listing tables: %w", err)
	}
	own := map[string]bool{firstTable: true, lastTable: true, quietTable: true}
	for _, t := range tables {
		if !own[t.Name] {
			c.DelTable(t)
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("oracle: deleting tables: %w", err)
	}
	cnt, err := o.counters.read()
	if err != nil {
		return fmt.Errorf("oracle: %w", err)
	}
	if !cnt.complete() {
		return errors.New("oracle: observer counters missing after clear (was the ruleset loaded with Load?)")
	}
	o.last = cnt
	return nil
}
