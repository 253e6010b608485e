// Package agentwire is the protocol between the integration harness (package cluster)
// and the podagent it runs in every simulated pod (integration/cmd/podagent): requests
// on the agent's standard input and answers on its standard output, one JSON object
// per line. It has no dependencies, so that the agent stays a small binary.
package agentwire

// Request is one order to an agent. Op "" (a probe): connect to Addr:Port with Proto
// ("tcp", "udp" or "sctp") and wait at most TimeoutMS for the server's greeting. Op
// "open": open a session (TCP or UDP) to Addr:Port with an exchange every IntervalMS,
// each bounded by TimeoutMS; the session is known by this request's ID. Op "close": end
// session Session.
type Request struct {
	ID         int64  `json:"id"`
	Op         string `json:"op,omitempty"`
	Addr       string `json:"addr,omitempty"`
	Port       uint16 `json:"port,omitempty"`
	Proto      string `json:"proto,omitempty"`
	TimeoutMS  int    `json:"timeout_ms,omitempty"`
	IntervalMS int    `json:"interval_ms,omitempty"`
	Session    int64  `json:"session,omitempty"`
}

// Ops of Request.
const (
	OpProbe = ""
	OpOpen  = "open"
	OpClose = "close"
)

// Response answers request ID: OK when the greeting (or a session's first answer)
// arrived, Peer is the name in it. The agent's first line is {"ready":true}, once its
// listeners are bound. A line with Session set is an event of that session instead:
// Exchanges is how many exchanges have succeeded; BrokenNS (Unix nanoseconds), when
// set, is when the exchange that failed started, and Error says why.
type Response struct {
	ID        int64  `json:"id,omitempty"`
	Ready     bool   `json:"ready,omitempty"`
	OK        bool   `json:"ok,omitempty"`
	Peer      string `json:"peer,omitempty"`
	Error     string `json:"error,omitempty"`
	Session   int64  `json:"session,omitempty"`
	Exchanges int    `json:"exchanges,omitempty"`
	BrokenNS  int64  `json:"broken_ns,omitempty"`
}
