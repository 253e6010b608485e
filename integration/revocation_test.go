package integration

// Revocation reaches established connections: a change that denies a flow also stops
// the connections of that flow that were established before it (the daemon deletes
// their conntrack entries), and leaves the others alone.
//
// Topology of helpers_test.go (x/a, y/c on node 0; x/b, y/d on node 1). x/a is
// isolated for ingress by two policies of x:
//
//	allow-c:       x/a admits y/c (app=c) and y/d (app=d) on TCP 80 and UDP 53
//	allow-servers: pods with role=server admit y/d on TCP 80 and UDP 53
//
// and admits x/b through a third (allow-b), which no change touches: a TCP and a UDP
// session x/b -> x/a must survive everything. Each case opens a TCP and a UDP session
// that its change then revokes, and measures the time from the API write to the
// first failed exchange (sessions exchange every 100 ms; a TCP exchange fails after
// the 1 s probe timeout, so the cut is at most that much earlier than measured):
//
//	peer label change:       y/c loses app=c                  (same node)
//	policy edit:             allow-c no longer names y/d       (across nodes)
//	pod leaving a selector:  x/a loses role=server, so allow-servers no longer
//	                         selects it and y/d's sessions are cut (across nodes)

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/nftwarden/nftwarden/integration/cluster"
)

// revokeBound is how long a revoked session may live after the change: the daemon's
// flush and sweep take milliseconds, the session notices within its exchange interval
// plus the probe timeout.
const revokeBound = 5 * time.Second

func TestIntegrationRevocation(t *testing.T) {
	tp := started(t, cluster.Options{})
	ctx := testCtx(t)
	env := tp.env
	ports := []networkingv1.NetworkPolicyPort{port(corev1.ProtocolTCP, 80), port(corev1.ProtocolUDP, 53)}
	allowC := func(apps ...string) *networkingv1.NetworkPolicy {
		var ps []networkingv1.NetworkPolicyPeer
		for _, a := range apps {
			ps = append(ps, nsPodPeer(tp.nsLabels(tp.y), app(a)))
		}
		return policy(tp.x, "allow-c", selecting(app("a")), ingress(from(ps, ports...)))
	}
	must(t, env.ApplyPolicy(ctx, allowC("c", "d")))
	must(t, env.ApplyPolicy(ctx, policy(tp.x, "allow-servers", selecting(map[string]string{"role": "server"}),
		ingress(from(peers(nsPodPeer(tp.nsLabels(tp.y), app("d"))), ports...)))))
	must(t, env.ApplyPolicy(ctx, policy(tp.x, "allow-b", selecting(app("a")), ingress(from(peers(podPeer(app("b"))))))))
	want := cluster.NewReachability(tp.all, true)
	want.ExpectIngress(tp.a, false)
	want.Expect(tp.b, tp.a, true)
	want.Expect(tp.c, tp.a, true)
	want.Expect(tp.d, tp.a, true)
	tp.expect(t, want, tcp80v4, udp53v4)

	var unrelated []*cluster.Session
	for _, f := range []cluster.Flow{tcp80v4, udp53v6} {
		s, err := env.OpenSession(ctx, tp.b, tp.a, f)
		must(t, err)
		defer s.Close()
		unrelated = append(unrelated, s)
	}

	for _, tc := range []struct {
		name   string
		from   *cluster.Pod
		setup  func() // makes the flow allowed again (before the sessions open)
		change func()
	}{
		{
			name:   "peer label change",
			from:   tp.c,
			change: func() { must(t, env.SetPodLabels(ctx, tp.c, map[string]string{"app": "c-retired"})) },
		},
		{
			name:   "policy edit",
			from:   tp.d,
			change: func() { must(t, env.ApplyPolicy(ctx, allowC("c"))) },
		},
		{
			name:  "pod leaving a selector",
			from:  tp.d,
			setup: func() { must(t, env.SetPodLabels(ctx, tp.a, map[string]string{"app": "a", "role": "server"})) },
			change: func() {
				must(t, env.SetPodLabels(ctx, tp.a, map[string]string{"app": "a"}))
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			var revoked []*cluster.Session
			for _, f := range []cluster.Flow{tcp80v4, udp53v4} {
				waitVerdict(t, env, tc.from, tp.a, f, true)
				s, err := env.OpenSession(ctx, tc.from, tp.a, f)
				must(t, err)
				defer s.Close()
				revoked = append(revoked, s)
			}
			time.Sleep(3 * cluster.SessionInterval)
			changed := time.Now()
			tc.change()
			for _, s := range revoked {
				cut, err := waitBroken(ctx, s, revokeBound)
				if err != nil {
					t.Errorf("%v", err)
					continue
				}
				t.Logf("%s: %s cut %v after the change (first failed exchange started then)", tc.name, s,
					max(0, cut.Sub(changed)).Round(10*time.Millisecond))
			}
			// The revoked flow is denied to new connections too.
			waitVerdict(t, env, tc.from, tp.a, tcp80v4, false)
			for _, s := range unrelated {
				if broken, _ := s.Broken(); broken {
					t.Errorf("unrelated session %s was cut", s)
				}
			}
		})
	}
}

// waitBroken waits until the session breaks and returns when its failing exchange
// started.
func waitBroken(ctx context.Context, s *cluster.Session, bound time.Duration) (time.Time, error) {
	deadline := time.Now().Add(bound)
	for {
		if broken, at := s.Broken(); broken {
			return at, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return time.Time{}, &sessionAliveError{s: s, bound: bound}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type sessionAliveError struct {
	s     *cluster.Session
	bound time.Duration
}

func (e *sessionAliveError) Error() string {
	return "session " + e.s.String() + " still alive " + e.bound.String() + " after a change that revokes it"
}
