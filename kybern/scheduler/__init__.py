"""The scheduler: a plugin framework shaped like kube-scheduler's (queue sort, filter, score,
reserve, permit, bind) over an in-memory cache of nodes and assumed pods, built on
`kybern.client`."""
