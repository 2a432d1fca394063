// Command daprd is the Dapr sidecar (github.com/dapr/dapr/cmd/daprd/app), built with
// -tags stablecomponents, plus Dapr's own Go bindings.rocketmq (an allcomponents-only
// component upstream) so tests can run it side by side with bindings.rocketmq-pluggable.
package main

import (
	"github.com/dapr/components-contrib/bindings"
	"github.com/dapr/components-contrib/bindings/rocketmq"
	"github.com/dapr/dapr/cmd/daprd/app"
	bindingsLoader "github.com/dapr/dapr/pkg/components/bindings"
	"github.com/dapr/kit/logger"
)

func init() {
	bindingsLoader.DefaultRegistry.RegisterInputBinding(func(l logger.Logger) bindings.InputBinding {
		return rocketmq.NewRocketMQ(l)
	}, "rocketmq")
	bindingsLoader.DefaultRegistry.RegisterOutputBinding(func(l logger.Logger) bindings.OutputBinding {
		return rocketmq.NewRocketMQ(l)
	}, "rocketmq")
}

func main() { app.Run() }
