package cniplugin

import (
	"github.com/containernetworking/cni/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
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
	if msgs := validation.IsDNS1123Label(id.namespace); len(msgs) > 0 {
		return id, errorf(types.ErrInvalidEnvironmentVariables, "nftwarden-cni: CNI_ARGS K8S_POD_NAMESPACE %q: %s", id.namespace, msgs[0])
	}
	if msgs := validation.IsDNS1123Subdomain(id.name); len(msgs) > 0 {
		return id, errorf(types.ErrInvalidEnvironmentVariables, "nftwarden-cni: CNI_ARGS K8S_POD_NAME %q: %s", id.name, msgs[0])
	}
	return id, nil
}
