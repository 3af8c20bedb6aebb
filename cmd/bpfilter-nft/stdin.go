package main

import (
	"io"
	"os"
)

// stdin is where "-" reads from; tests replace it.
var stdin io.Reader = os.Stdin
