package enforcer

import (
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// UpsertClusterNetworkPolicy adds or updates a ClusterNetworkPolicy
// (sigs.k8s.io/network-policy-api v1beta1; v1alpha2 has the same schema):
// stored in the model, parsed once, and compiled into the tiers (tiers.go).
// Invalid parts are returned as an error, logged once per version, and fail
// closed (cnp.go): a Deny or Pass that cannot be compiled still denies, an
// Accept that cannot be compiled accepts nothing.
func (e *Engine) UpsertClusterNetworkPolicy(cnp *v1beta1.ClusterNetworkPolicy) error {
	if cnp == nil || cnp.Name == "" {
		return errors.New("enforcer: upsert clusternetworkpolicy: nil policy or missing name")
	}
	rec := &cnpRecord{ID: cnp.Name, Spec: *cnp.Spec.DeepCopy(), Audit: auditAnnotated(cnp.Annotations),
		Enforcement: cnp.Annotations[EnforcementAnnotation]}
	parsed, perr := parseCNP(&rec.Spec, e.cfg.ClusterNetworkPolicyExperimental)
	rec.parsed = parsed
	if perr != nil {
		perr = fmt.Errorf("enforcer: clusternetworkpolicy %s: %w", rec.ID, perr)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.m.clusterPolicy(rec.ID)
	if old != nil && old.Enforcement == rec.Enforcement && equality.Semantic.DeepEqual(old.Spec, rec.Spec) {
		return e.cnpErrs[rec.ID] // logged when this version arrived
	}
	if err := e.m.put(tableClusterPolicies, rec.ID, rec); err != nil {
		err = fmt.Errorf("enforcer: upsert clusternetworkpolicy %s: %w", rec.ID, err)
		e.log.Error("cluster network policy not stored", "policy", rec.ID, "error", err)
		return err
	}
	warnEnforcement(e.log, cnp.Annotations, KindClusterNetworkPolicy, rec.ID)
	if perr != nil {
		e.log.Error("invalid cluster network policy evaluated to fail closed", "policy", rec.ID, "error", perr)
		e.cnpErrs[rec.ID] = perr
	} else {
		delete(e.cnpErrs, rec.ID)
	}
	e.c.clusterPolicyChanged(rec.ID, rec)
	e.c.collectGroups()
	return perr
}

// DeleteClusterNetworkPolicy removes a ClusterNetworkPolicy; a missing one
// is not an error.
func (e *Engine) DeleteClusterNetworkPolicy(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m.clusterPolicy(name) == nil {
		return
	}
	e.m.remove(tableClusterPolicies, name)
	delete(e.cnpErrs, name)
	e.c.clusterPolicyChanged(name, nil)
	e.c.collectGroups()
}
