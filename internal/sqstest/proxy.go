package sqstest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// Proxy is a TCP fault proxy (toxiproxy, run in-process) between a client
// and the local server: it adds latency, resets or stalls connections on
// demand, so tests and benchmarks see the faults a real network makes.
type Proxy struct {
	// Endpoint is the proxy's URL, http://127.0.0.1:PORT; point the
	// client here instead of at the server.
	Endpoint string

	proxy *toxiproxy.Proxy
}

// StartProxy listens on a free loopback port and forwards to upstream, an
// http://host:port endpoint such as Server.Endpoint.
func StartProxy(upstream string) (*Proxy, error) {
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("proxy upstream %q is not an http://host:port URL", upstream)
	}
	nop := zerolog.Nop()
	api := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), nop)
	p := toxiproxy.NewProxy(api, "sqs", "127.0.0.1:0", u.Host)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("start fault proxy: %w", err)
	}
	return &Proxy{Endpoint: "http://" + p.Listen, proxy: p}, nil
}

// Toxic is one fault. Type is a toxiproxy toxic type ("latency",
// "reset_peer", "timeout", "bandwidth", "slicer", "limit_data"); Stream is
// "upstream" (client→server) or "downstream" (the default); Toxicity is the
// share of connections it applies to (0 means all).
type Toxic struct {
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Stream     string         `json:"stream,omitempty"`
	Toxicity   float32        `json:"toxicity"`
	Attributes map[string]any `json:"attributes"`
}

// Add installs a fault; it applies to new and open connections.
func (p *Proxy) Add(t Toxic) error {
	if t.Toxicity == 0 {
		t.Toxicity = 1
	}
	body, err := json.Marshal(t)
	if err != nil {
		return err
	}
	if _, err := p.proxy.Toxics.AddToxicJson(strings.NewReader(string(body))); err != nil {
		return fmt.Errorf("add toxic %s: %w", t.Name, err)
	}
	return nil
}

// Remove takes a fault away.
func (p *Proxy) Remove(name string) error {
	if err := p.proxy.Toxics.RemoveToxic(context.Background(), name); err != nil {
		return fmt.Errorf("remove toxic %s: %w", name, err)
	}
	return nil
}

// AddLatency delays every byte by rtt in all: half on the way to the
// server, half on the way back.
func (p *Proxy) AddLatency(name string, rtt time.Duration) error {
	half := rtt.Milliseconds() / 2
	if err := p.Add(Toxic{Name: name + "-up", Type: "latency", Stream: "upstream",
		Attributes: map[string]any{"latency": half}}); err != nil {
		return err
	}
	return p.Add(Toxic{Name: name + "-down", Type: "latency", Stream: "downstream",
		Attributes: map[string]any{"latency": rtt.Milliseconds() - half}})
}

// RemoveLatency takes away what AddLatency(name, …) installed.
func (p *Proxy) RemoveLatency(name string) error {
	if err := p.Remove(name + "-up"); err != nil {
		return err
	}
	return p.Remove(name + "-down")
}

// Stop closes the listener and every proxied connection.
func (p *Proxy) Stop() { p.proxy.Stop() }
