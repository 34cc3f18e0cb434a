package message

import "context"

type ctxKey struct{}

// NewContext returns ctx carrying m. The public package puts the message
// it received there before it calls a handler with its public copy, which
// leaves out the receipt handle, when the handler is a Wanter: the worker
// binary's built-in handlers read it back with FromContext (a Lambda
// event carries it).
func NewContext(ctx context.Context, m *Message) context.Context {
	return context.WithValue(ctx, ctxKey{}, m)
}

// FromContext returns the message NewContext put in ctx, if any.
func FromContext(ctx context.Context) (*Message, bool) {
	m, ok := ctx.Value(ctxKey{}).(*Message)
	return m, ok
}

// Wanter is a handler of the public package that reads the received
// message back with FromContext; other handlers' contexts go without it.
type Wanter interface{ WantsReceived() }
