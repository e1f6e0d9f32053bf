// The iWF server (github.com/indeedeng/iwf v1.19.3, cmd/server) with its Temporal worker's sticky workflow
// cache sized by IWF_STICKY_CACHE_SIZE: iWF itself only sets it to 0 (its sticky-cache-disabled mode, for
// tests), and the Temporal Go SDK default is 10,000 workflows. Everything else is iWF's own CLI, unchanged.
package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/indeedeng/iwf/cmd/server/iwf"
	"go.temporal.io/sdk/worker"
)

func main() {
	if value := os.Getenv("IWF_STICKY_CACHE_SIZE"); value != "" {
		size, err := strconv.Atoi(value)
		if err != nil || size < 0 {
			fmt.Fprintf(os.Stderr, "IWF_STICKY_CACHE_SIZE must be a number of workflows, not %q\n", value)
			os.Exit(2)
		}
		worker.SetStickyWorkflowCacheSize(size)
	}
	app := iwf.BuildCLI()
	if len(os.Args) == 1 {
		os.Args = append(os.Args, "start")
	}
	app.Run(os.Args)
}
