package cluster

import (
	"context"
	"errors"
	"testing"
	"time"
)

// StartForTest creates an Env on cp for one test (or one group of subtests)
// and removes it when t ends; if t failed, it first logs Diagnostics (each
// daemon's state and log, each node's ruleset), which is what a failure report
// needs and what is gone once the Env is closed. It skips t when the bridged
// variant lacks br_netfilter and fails t on any other error. Creation is
// bounded by a minute (a few seconds is usual).
func StartForTest(t testing.TB, cp *ControlPlane, opts Options) *Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	env, err := NewEnv(ctx, cp, opts)
	if errors.Is(err, ErrNoBrNetfilter) {
		t.Skipf("bridged variant: %v", err)
	}
	if err != nil {
		t.Fatalf("environment: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			// t's own context is done by now.
			dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
			t.Logf("diagnostics:\n%s", env.Diagnostics(dctx))
			dcancel()
		}
		env.Close()
	})
	return env
}
