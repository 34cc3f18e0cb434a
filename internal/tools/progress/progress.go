// Package progress shows a long tool run's progress on a terminal — how
// far, how fast, what is left — and nothing at all when its output is
// not a terminal, so that piped and logged output stays clean.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Bar is one progress line. A nil or off Bar does nothing; all methods
// are safe for concurrent use.
type Bar struct {
	mu  sync.Mutex
	w   io.Writer
	bar *progressbar.ProgressBar
}

// Options shape a Bar.
type Options struct {
	// Total is the amount Set counts up to; -1 when it is not known.
	Total int64
	// Bytes shows amounts as bytes (a file read) instead of a count.
	Bytes bool
	// Description is shown before the bar.
	Description string
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// New returns a Bar drawn on w when w is a terminal, else one that does
// nothing.
func New(w io.Writer, o Options) *Bar {
	b := &Bar{w: w}
	if !IsTerminal(w) {
		return b
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(o.Description),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionUseANSICodes(true),
	}
	if o.Bytes {
		opts = append(opts, progressbar.OptionShowBytes(true))
	} else {
		opts = append(opts, progressbar.OptionShowCount(), progressbar.OptionShowIts())
	}
	b.bar = progressbar.NewOptions64(o.Total, opts...)
	return b
}

// Set moves the bar to n of the total.
func (b *Bar) Set(n int64) {
	if b == nil || b.bar == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	_ = b.bar.Set64(n)
}

// SetTotal changes the amount Set counts up to, as what is left becomes
// known.
func (b *Bar) SetTotal(total int64) {
	if b == nil || b.bar == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.bar.ChangeMax64(total)
}

// Describe changes the text before the bar ("1,200 sent").
func (b *Bar) Describe(s string) {
	if b == nil || b.bar == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.bar.Describe(s)
}

// Printf writes one line to the Bar's writer (without it, to w) with the
// bar cleared first, so that the line is not drawn over.
func (b *Bar) Printf(w io.Writer, format string, args ...any) {
	if b == nil || b.bar == nil {
		fmt.Fprintf(w, format+"\n", args...)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	_ = b.bar.Clear()
	fmt.Fprintf(b.w, format+"\n", args...)
}

// Close ends the bar and takes it off the screen.
func (b *Bar) Close() {
	if b == nil || b.bar == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	_ = b.bar.Exit()
	_ = b.bar.Clear()
}
