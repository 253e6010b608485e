package cniplugin

import (
	"fmt"
	"regexp"

	"github.com/containernetworking/cni/pkg/types"
)

// k8sArgs are the CNI_ARGS the kubelet's runtimes (containerd, CRI-O) pass.
// The field names are the keys themselves: LoadArgs matches them by name.
type k8sArgs struct {
	types.CommonArgs
	K8S_POD_NAMESPACE          types.UnmarshallableString
	K8S_POD_NAME               types.UnmarshallableString
	K8S_POD_UID                types.UnmarshallableString
	K8S_POD_INFRA_CONTAINER_ID types.UnmarshallableString
}

// podIdentity is who the CNI call is for.
type podIdentity struct {
	namespace, name, uid string
}

// parseArgs reads the pod's identity from CNI_ARGS. Keys it does not know
// are other plugins' business and are ignored, as if IgnoreUnknown were set.
func parseArgs(cniArgs string) (podIdentity, error) {
	a := k8sArgs{CommonArgs: types.CommonArgs{IgnoreUnknown: true}}
	if err := types.LoadArgs(cniArgs, &a); err != nil {
		return podIdentity{}, errorf(types.ErrInvalidEnvironmentVariables, "nftwarden-cni: CNI_ARGS: %v", err)
	}
	id := podIdentity{namespace: string(a.K8S_POD_NAMESPACE), name: string(a.K8S_POD_NAME), uid: string(a.K8S_POD_UID)}
	if id.namespace == "" || id.name == "" {
		return id, errorf(types.ErrInvalidEnvironmentVariables,
			"nftwarden-cni: CNI_ARGS has no K8S_POD_NAMESPACE and K8S_POD_NAME: the runtime must pass the pod's identity")
	}
	if err := checkName(id.namespace, dns1123Label, 63, "a DNS-1123 label"); err != nil {
		return id, errorf(types.ErrInvalidEnvironmentVariables, "nftwarden-cni: CNI_ARGS K8S_POD_NAMESPACE %q: %v", id.namespace, err)
	}
	if err := checkName(id.name, dns1123Subdomain, 253, "a DNS-1123 subdomain"); err != nil {
		return id, errorf(types.ErrInvalidEnvironmentVariables, "nftwarden-cni: CNI_ARGS K8S_POD_NAME %q: %v", id.name, err)
	}
	return id, nil
}

// The forms of namespace and pod names (apimachinery's IsDNS1123Label and
// IsDNS1123Subdomain). The plugin checks them with the standard library:
// apimachinery's validation package brings klog and its package init into a
// process that the runtime starts once per pod, where every millisecond of
// start-up is added to the pod's ADD.
var (
	dns1123Label     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dns1123Subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

func checkName(s string, form *regexp.Regexp, maxLen int, what string) error {
	if len(s) > maxLen {
		return fmt.Errorf("must be no more than %d characters", maxLen)
	}
	if !form.MatchString(s) {
		return fmt.Errorf("must be %s: lower case alphanumeric characters, '-' (and '.' in a subdomain), starting and ending with an alphanumeric character", what)
	}
	return nil
}
