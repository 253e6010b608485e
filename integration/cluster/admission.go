package cluster

// criticalPodsAdmission is the API server's admission configuration with
// ControlPlaneOptions.LimitCriticalPods: the ResourceQuota plugin (enabled by default,
// as is Priority, which resolves priorityClassName) treats pods of the two system
// priority classes as "limited resources". Such a pod is admitted only in a namespace
// that has a ResourceQuota whose scopeSelector covers its class. GKE configures its
// API servers this way (its kube-system holds the quota "gcp-critical-pods"), which is
// why a DaemonSet with priorityClassName system-node-critical outside kube-system is
// rejected there unless it ships such a quota. The format is the one of the
// Kubernetes documentation ("Limit Priority Class consumption by default").
const criticalPodsAdmission = `apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
  - name: ResourceQuota
    configuration:
      apiVersion: apiserver.config.k8s.io/v1
      kind: ResourceQuotaConfiguration
      limitedResources:
        - resource: pods
          matchScopes:
            - scopeName: PriorityClass
              operator: In
              values: ["system-node-critical", "system-cluster-critical"]
`
