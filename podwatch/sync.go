package podwatch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"

	"github.com/nftwarden/nftwarden/enforcer"
)

// Sync feeds eng once, for a one-shot command on a model-only engine (nftwarden
// explain, dump --desired): it starts the informers Run starts, with the same
// transforms and handlers, waits until each handler has seen its informer's
// initial list, hands every cached object to eng as Run's first batch does, and
// stops the informers. When it returns nil, eng holds the whole cluster as
// listed. It never calls Flush or Reconcile (eng needs no dataplane), and
// Hooks other than ObjectError and Event are not called.
//
// A list the API server refuses for good (unauthorized, forbidden, not found,
// bad request) ends Sync with that error at once; other list errors are logged
// and retried with client-go's backoff until ctx ends, and the error then names
// the kinds not listed and the last list error. Stuck lists are logged as
// Run logs them (Options.SyncLogInterval).
func Sync(ctx context.Context, client kubernetes.Interface, eng *enforcer.Engine, opts Options) error {
	return newWatcher(client, eng, opts).sync(ctx)
}

func (w *Watcher) sync(ctx context.Context) error {
	defer w.shutdownInformers()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var lastErr atomic.Pointer[error]
	w.listFailed = func(kind Kind, err error) {
		if permanent(err) {
			cancel(err)
			return
		}
		lastErr.Store(&err)
		w.log.Warn("API server request failed; retrying", "kind", kind, "error", err)
	}
	if err := w.startInformers(ctx); err != nil {
		return err
	}
	if !w.waitForSync(ctx) {
		err := fmt.Errorf("podwatch: %s not listed: %w", strings.Join(w.pendingKinds(), ", "), context.Cause(ctx))
		if last := lastErr.Load(); last != nil && !errors.Is(err, *last) {
			err = fmt.Errorf("%w (last error: %w)", err, *last)
		}
		return err
	}
	w.applyAll(w.cachedKeys(), false)
	return nil
}

// permanent reports whether the API server refused a request for good: a retry
// cannot succeed until someone changes the credentials, the role or the server.
func permanent(err error) bool {
	return apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err) || apierrors.IsNotFound(err) ||
		apierrors.IsBadRequest(err) || apierrors.IsInvalid(err) || apierrors.IsMethodNotSupported(err)
}
