package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/nftwarden/nftwarden/daemon/cniwire"
	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/podwatch"
)

// cniBackend is what the CNI socket hands its requests to:
// podwatch.Watcher's synchronous pod API.
type cniBackend interface {
	StartPod(ctx context.Context, namespace, name, uid string, addrs []netip.Addr) (enforcer.FlushResult, error)
	StopPod(ctx context.Context, namespace, name string, addrs []netip.Addr) (enforcer.FlushResult, error)
	PodProgrammed(namespace, name string, addrs []netip.Addr) error
}

var _ cniBackend = (*podwatch.Watcher)(nil)

// Bounds of a CNI request.
const (
	// cniMaxBody: a request is a pod's name and a few addresses.
	cniMaxBody = 64 << 10
	// cniMaxIPs: a pod has one address per family; a CNI result with
	// more than this is not a pod's.
	cniMaxIPs = 16
	// cniDefaultTimeout is the budget of a request that names none (the
	// plugin's default).
	cniDefaultTimeout = 10 * time.Second
	// cniMaxTimeout caps a request's budget.
	cniMaxTimeout = 5 * time.Minute
	// cniReplyMargin is kept of a request's timeout to send the answer
	// before the plugin stops waiting; a tenth of short ones.
	cniReplyMargin = 500 * time.Millisecond
)

// CNI commands, the "command" label of the CNI metrics.
const (
	cniAdd   = "add"
	cniDel   = "del"
	cniCheck = "check"
)

// cniHandler serves the cniwire protocol from backend.
type cniHandler struct {
	backend cniBackend
	log     *slog.Logger
	m       *cniMetrics
}

// newCNIHandler returns the HTTP handler of the CNI socket.
func newCNIHandler(backend cniBackend, log *slog.Logger, m *cniMetrics) http.Handler {
	h := &cniHandler{backend: backend, log: log.With("component", "cni"), m: m}
	mux := http.NewServeMux()
	mux.Handle("POST "+cniwire.PathAdd, h.command(cniAdd, h.add))
	mux.Handle("POST "+cniwire.PathDel, h.command(cniDel, h.del))
	mux.Handle("POST "+cniwire.PathCheck, h.command(cniCheck, h.check))
	return mux
}

// cniError is a failed command: its HTTP status and whether the runtime
// should retry.
type cniError struct {
	status int
	retry  bool
	err    error
}

func (e *cniError) Error() string { return e.err.Error() }
func (e *cniError) Unwrap() error { return e.err }

func badRequest(format string, args ...any) *cniError {
	return &cniError{status: http.StatusBadRequest, err: fmt.Errorf(format, args...)}
}

// command wraps one command's function: decoding and checking the request,
// its deadline, the answer, the metrics and the log.
func (h *cniHandler) command(cmd string, run func(ctx context.Context, req *cniwire.Request) *cniError) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		start := time.Now()
		req, cerr := decodeCNIRequest(rw, r, cmd)
		if cerr == nil {
			ctx, cancel := context.WithTimeout(r.Context(), cniBudget(req.Timeout))
			cerr = run(ctx, req)
			cancel()
		}
		took := time.Since(start)
		resp := cniwire.Response{}
		status := http.StatusOK
		if cerr != nil {
			status, resp.Error, resp.Retry = cerr.status, cerr.Error(), cerr.retry
		} else if cmd != cniCheck {
			resp.Programmed = took
		}
		h.m.observe(cmd, status, took)
		h.logRequest(cmd, req, status, took, cerr)
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(status)
		_ = json.NewEncoder(rw).Encode(resp)
	})
}

// decodeCNIRequest reads and checks the request of cmd.
func decodeCNIRequest(rw http.ResponseWriter, r *http.Request, cmd string) (*cniwire.Request, *cniError) {
	var req cniwire.Request
	dec := json.NewDecoder(http.MaxBytesReader(rw, r.Body, cniMaxBody))
	if err := dec.Decode(&req); err != nil {
		return nil, badRequest("decode the request: %w", err)
	}
	if dec.More() {
		return &req, badRequest("trailing data after the request")
	}
	if errs := validation.IsDNS1123Label(req.Namespace); len(errs) > 0 {
		return &req, badRequest("namespace %q: %s", req.Namespace, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(req.Name); len(errs) > 0 {
		return &req, badRequest("pod name %q: %s", req.Name, strings.Join(errs, "; "))
	}
	switch {
	case len(req.IPs) > cniMaxIPs:
		return &req, badRequest("%d addresses: a pod has at most %d", len(req.IPs), cniMaxIPs)
	case len(req.IPs) == 0 && cmd != cniDel:
		return &req, badRequest("no addresses (the previous plugin's result has no ips)")
	case req.Timeout < 0 || req.Timeout > cniMaxTimeout:
		return &req, badRequest("timeout %v: want 0 (the default, %v) up to %v", req.Timeout, cniDefaultTimeout, cniMaxTimeout)
	}
	// Which addresses a pod may have is the engine's to say (it refuses
	// the others); an empty one is a malformed request.
	for _, a := range req.IPs {
		if !a.IsValid() {
			return &req, badRequest("an empty address")
		}
	}
	return &req, nil
}

// cniBudget is how long the daemon works on a request whose plugin waits
// timeout: less a margin to answer in.
func cniBudget(timeout time.Duration) time.Duration {
	if timeout == 0 {
		timeout = cniDefaultTimeout
	}
	return timeout - min(cniReplyMargin, timeout/10)
}

func (h *cniHandler) add(ctx context.Context, req *cniwire.Request) *cniError {
	_, err := h.backend.StartPod(ctx, req.Namespace, req.Name, req.UID, req.IPs)
	return classifyCNIError(err)
}

func (h *cniHandler) del(ctx context.Context, req *cniwire.Request) *cniError {
	_, err := h.backend.StopPod(ctx, req.Namespace, req.Name, req.IPs)
	return classifyCNIError(err)
}

func (h *cniHandler) check(_ context.Context, req *cniwire.Request) *cniError {
	err := h.backend.PodProgrammed(req.Namespace, req.Name, req.IPs)
	if cerr := classifyCNIError(err); cerr == nil || cerr.retry {
		return cerr
	}
	return &cniError{status: http.StatusConflict, err: err}
}

// classifyCNIError gives a backend error its status: the pod unknown to the
// API server (404), what may work when tried again (503: not ready, the
// pod not seen in time, a failed kernel batch, the budget spent), and the
// engine's refusal of the pod (422: not on this node, hostNetwork,
// finished, addresses it cannot take), which no retry changes.
func classifyCNIError(err error) *cniError {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, podwatch.ErrPodNotFound):
		return &cniError{status: http.StatusNotFound, err: err}
	case errors.Is(err, podwatch.ErrNotReady), errors.Is(err, enforcer.ErrNotSynced), errors.Is(err, podwatch.ErrFlushFailed),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return &cniError{status: http.StatusServiceUnavailable, retry: true, err: err}
	}
	return &cniError{status: http.StatusUnprocessableEntity, err: err}
}

// logRequest logs every request at debug and every failure at warning, with
// the pod and the container.
func (h *cniHandler) logRequest(cmd string, req *cniwire.Request, status int, took time.Duration, cerr *cniError) {
	attrs := []any{"command", cmd, "status", status, "duration", took}
	if req != nil {
		attrs = append(attrs, "pod", req.Namespace+"/"+req.Name, "container", req.ContainerID, "ips", req.IPs)
	}
	if cerr == nil {
		h.log.Debug("CNI request", attrs...)
		return
	}
	h.log.Warn("CNI request failed", append(attrs, "retry", cerr.retry, "error", cerr.err)...)
}
