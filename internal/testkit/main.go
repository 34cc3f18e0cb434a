package testkit

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// leakIgnores are the goroutines a package's tests may leave behind, for
// every package alike.
var leakIgnores = []goleak.Option{
	// HTTP clients (the SDK's, scrapes of a worker's /metrics) keep idle
	// keep-alive connections that nothing in the code under test can close.
	goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
	goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
	// toxiproxy (sqstest.Proxy) ends a link's goroutines a moment after
	// the proxy stops.
	goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*ToxicStub).Run"),
	goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2.(*ToxicLink).read"),
	goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2.(*ToxicLink).write"),
}

// WrapTestMain is every package's TestMain: it runs each setUp in order
// (starting a server, building a binary), the tests, the teardowns the
// setUps returned in reverse order, and then, if everything passed, fails
// the run when goroutines are left behind. A setUp that fails ends the run
// before the tests, after the teardowns returned so far.
func WrapTestMain(m *testing.M, setUps ...func() (tearDown func(), err error)) {
	os.Exit(wrapTestMain(m, setUps))
}

func wrapTestMain(m *testing.M, setUps []func() (func(), error)) (code int) {
	var tearDowns []func()
	defer func() {
		for i := len(tearDowns) - 1; i >= 0; i-- {
			tearDowns[i]()
		}
		if code == 0 {
			if err := goleak.Find(leakIgnores...); err != nil {
				fmt.Fprintln(os.Stderr, "goleak: goroutines left behind:", err)
				code = 1
			}
		}
	}()
	for _, setUp := range setUps {
		tearDown, err := setUp()
		if tearDown != nil {
			tearDowns = append(tearDowns, tearDown)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "test setup:", err)
			return 1
		}
	}
	return m.Run()
}
