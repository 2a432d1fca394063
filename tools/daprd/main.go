// Command daprd is the Dapr sidecar, upstream github.com/dapr/dapr/cmd/daprd/app run as is
// (app.Run), with only the Go components the tests use registered, to keep the cold build
// short in CI: upstream registers them in cmd/daprd/components, one file per component
// behind -tags stablecomponents / allcomponents, and that tag compiles ~50 SDKs (Azure, AWS,
// GCP, ...) that no test loads. scripts/daprd-local.sh builds without a tag and replaces
// cmd/daprd/components/zz_notag.go (which panics when no tag is set) with an empty file
// through `go build -overlay`; everything else is the upstream daprd, including the
// discovery of pluggable components (bindings.rocketmq-pluggable) on their sockets.
//
// Registered here, each as upstream registers it:
//   - bindings.rocketmq (input and output): Dapr's own Go binding (allcomponents-only
//     upstream), run side by side with bindings.rocketmq-pluggable;
//   - secretstores.local.env: secretKeyRef in the tests against the ACL broker;
//   - nameresolution.kubernetes: the resolver every test Configuration names
//     (spec.nameResolution.component: kubernetes; inert in self-hosted mode) instead of the
//     default mDNS, which binds UDP 5353 on all interfaces. Without it daprd still starts
//     but logs a name resolution init error and runs without a resolver.
//
// A test that needs another component type registers it below, copying the init of
// cmd/daprd/components/<kind>_<name>.go from the pinned dapr module.
package main

import (
	"github.com/dapr/components-contrib/bindings"
	"github.com/dapr/components-contrib/bindings/rocketmq"
	"github.com/dapr/components-contrib/nameresolution/kubernetes"
	"github.com/dapr/components-contrib/secretstores/local/env"
	"github.com/dapr/dapr/cmd/daprd/app"
	bindingsLoader "github.com/dapr/dapr/pkg/components/bindings"
	nrLoader "github.com/dapr/dapr/pkg/components/nameresolution"
	secretstoresLoader "github.com/dapr/dapr/pkg/components/secretstores"
	"github.com/dapr/kit/logger"
)

func init() {
	bindingsLoader.DefaultRegistry.RegisterInputBinding(func(l logger.Logger) bindings.InputBinding {
		return rocketmq.NewRocketMQ(l)
	}, "rocketmq")
	bindingsLoader.DefaultRegistry.RegisterOutputBinding(func(l logger.Logger) bindings.OutputBinding {
		return rocketmq.NewRocketMQ(l)
	}, "rocketmq")
	secretstoresLoader.DefaultRegistry.RegisterComponent(env.NewEnvSecretStore, "local.env")
	nrLoader.DefaultRegistry.RegisterComponent(kubernetes.NewResolver, "kubernetes")
}

func main() { app.Run() }
