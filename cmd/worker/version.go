package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/sqsworker/sqsworker/internal/buildinfo"
)

var versionCmd = &command{
	name:    "version",
	summary: "Print the version, the commit and how the binary was built",
	example: "worker version --json",
	flags: func(f *flagSet) action {
		var o struct{ JSON bool }
		f.bind(&o)
		f.group("Output")
		f.Var(&o.JSON, "json", "print one JSON object instead of lines")
		return func(_ context.Context, std stdio) error {
			info := buildinfo.Read()
			if o.JSON {
				return json.NewEncoder(std.out).Encode(info)
			}
			fmt.Fprint(std.out, info)
			return nil
		}
	},
}
