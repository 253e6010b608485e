package cniplugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/nftwarden/nftwarden/daemon/cniwire"
)

// maxAnswer caps the daemon's answer that is read: a Response is a few
// hundred bytes, and a confused peer on the socket must not fill memory.
const maxAnswer = 64 << 10

// daemonClient calls the daemon over its unix socket.
type daemonClient struct {
	socket  string
	timeout time.Duration
	http    *http.Client
}

func newDaemonClient(socket string, timeout time.Duration) *daemonClient {
	var d net.Dialer
	return &daemonClient{
		socket:  socket,
		timeout: timeout,
		http: &http.Client{
			Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return d.DialContext(ctx, "unix", socket)
				},
				DisableKeepAlives: true,
			},
		},
	}
}

// call POSTs req to path and waits at most the timeout for the answer. A
// daemon that is not listening, answers 503 or does not answer in time gives
// code 11 (try again later); its other refusals their own codes.
func (c *daemonClient) call(path string, req cniwire.Request) error {
	req.Timeout = c.timeout
	body, err := json.Marshal(req)
	if err != nil {
		return errorf(types.ErrInternal, "nftwarden-cni: encode the request: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://nftwarden"+path, bytes.NewReader(body))
	if err != nil {
		return errorf(types.ErrInternal, "nftwarden-cni: build the request: %v", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(hreq)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return errorf(types.ErrTryAgainLater, "nftwarden-cni: the nftwarden daemon did not answer within %v on %s", c.timeout, c.socket)
		}
		return errorf(types.ErrTryAgainLater, "nftwarden-cni: the nftwarden daemon is not reachable on %s: %v", c.socket, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return errorf(types.ErrTryAgainLater, "nftwarden-cni: the nftwarden daemon did not answer within %v on %s", c.timeout, c.socket)
		}
		return errorf(types.ErrTryAgainLater, "nftwarden-cni: read the nftwarden daemon's answer: %v", err)
	}
	var ans cniwire.Response
	if err := json.Unmarshal(raw, &ans); err != nil {
		return errorf(ErrDaemonAnswer, "nftwarden-cni: the nftwarden daemon's answer (%s) does not parse: %v", resp.Status, err)
	}
	return answerError(resp.StatusCode, ans)
}

// answerError maps the daemon's status to the command's result.
func answerError(status int, ans cniwire.Response) error {
	why := ans.Error
	if why == "" {
		why = http.StatusText(status)
	}
	switch {
	case status == http.StatusOK && ans.Error == "":
		return nil
	case status == http.StatusServiceUnavailable || ans.Retry:
		return errorf(types.ErrTryAgainLater, "nftwarden-cni: the nftwarden daemon cannot do it now: %s", why)
	case status == http.StatusBadRequest:
		return errorf(ErrDaemonRejected, "nftwarden-cni: the nftwarden daemon rejected the request: %s", why)
	case status == http.StatusNotFound:
		return errorf(ErrPodNotFound, "nftwarden-cni: %s", why)
	case status == http.StatusConflict:
		return errorf(ErrNotProgrammed, "nftwarden-cni: %s", why)
	case status == http.StatusUnprocessableEntity:
		return errorf(ErrPodRefused, "nftwarden-cni: the nftwarden daemon cannot program the pod: %s", why)
	}
	return errorf(ErrDaemonAnswer, "nftwarden-cni: the nftwarden daemon answered %d: %s", status, why)
}

// reachable reports whether something accepts connections on the socket.
func (c *daemonClient) reachable() error {
	conn, err := net.DialTimeout("unix", c.socket, c.timeout)
	if err != nil {
		return fmt.Errorf("the nftwarden daemon is not listening on %s: %w", c.socket, err)
	}
	return conn.Close()
}
