module email-agent/iwf-server

go 1.22

require (
	github.com/indeedeng/iwf v1.19.3
	go.temporal.io/sdk v1.30.0
)
