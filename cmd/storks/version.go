package main

import (
	"fmt"
	"runtime/debug"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/storks-rpc/storks/templates"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the versions of storks and the code generators it embeds",
		Long: `version prints the version of the storks module this binary was built from (as
go install records it; "(devel)" for a build from a source tree), the build's VCS
revision when known, and the versions of the generators "storks generate" runs.`,
		Example: `  storks version`,
		Args:    exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			for _, row := range versionRows() {
				fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
			}
			return tw.Flush()
		},
	}
}

// versionRows returns the name/value pairs storks version prints.
func versionRows() [][2]string {
	version, goVersion, protobuf := "(unknown)", "(unknown)", "(unknown)"
	var revision, modified, buildTime string
	if info, ok := debug.ReadBuildInfo(); ok {
		version, goVersion = info.Main.Version, info.GoVersion
		if version == "" {
			version = "(devel)"
		}
		for _, d := range info.Deps {
			if d.Path == "google.golang.org/protobuf" {
				protobuf = d.Version
				if d.Replace != nil {
					protobuf = d.Replace.Version
				}
			}
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				modified = s.Value
			case "vcs.time":
				buildTime = s.Value
			}
		}
	}
	rows := [][2]string{
		{"storks", version},
		{templates.PluginName, templates.Version},
		{"protoc-gen-go", protobuf},
		{"go", goVersion},
	}
	if revision != "" {
		if modified == "true" {
			revision += " (modified)"
		}
		if buildTime != "" {
			revision += " " + buildTime
		}
		rows = append(rows, [2]string{"revision", revision})
	}
	return rows
}
