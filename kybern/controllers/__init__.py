"""Controllers (deployment, replicaset, garbage collector, namespace, node lifecycle, endpoints,
serviceaccount, job, cronjob, daemonset, statefulset): level-based reconcile loops built on
`kybern.client`, run by `kybern server` and `kybern up`."""
