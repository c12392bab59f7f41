package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/storks-rpc/storks/internal/display"
	"github.com/storks-rpc/storks/registry"
)

func newRegistryCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "List and watch the providers registered in a registry",
		Long: `The registry commands show what consumers see: the instances registered for
each service key (service, version, group) in a registry given by URL.`,
		Example: `  storks registry ls --registry etcd://127.0.0.1:2379/storks
  storks registry watch --registry etcd://127.0.0.1:2379/storks storks.examples.greeter.v1.Greeter`,
		Args: subcommandArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newLsCmd(), newWatchCmd())
	return cmd
}

type lsFlags struct {
	registry string
	version  string
	group    string
	timeout  time.Duration
	output   string
	noCons   bool
}

func newLsCmd() *cobra.Command {
	var f lsFlags
	cmd := &cobra.Command{
		Use:     "ls --registry URL [SERVICE]",
		Aliases: []string{"list"},
		Short:   "List services and their instances",
		Long: `ls prints a table of service keys (service, version, group) and their instances
(ID, address, weight, age, published load, metadata). AGE is how long ago the
provider registered (its registered_at metadata); LOAD is what it publishes
with runtime.WithLoadReport: calls per second over its last interval, calls in
flight and, if it measures it, its CPU share. "-" means the instance does not
say. With -o json every instance's metadata is printed whole.

Below the providers, a CONSUMERS table lists the consumers that registered
themselves (every runtime.Reference does, unless made WithoutConsumerRecord):
application, address, process ID, when it started and its Storks version.
--no-consumers leaves it out.

Without SERVICE it lists every service key in the registry. With SERVICE it lists
the instances of that service in every version and group, or, with --version
and/or --group, of exactly that key.

Listing service keys needs a registry that can enumerate them (a
registry.Lister: etcd, Consul, ZooKeeper and inproc are). With one that cannot
(direct://, static://), name the SERVICE; then only the key with the given
--version and --group (empty by default) is shown.`,
		Example: `  # Everything:
  storks registry ls --registry etcd://127.0.0.1:2379/storks

  # One service, all versions and groups:
  storks registry ls --registry etcd://127.0.0.1:2379/storks storks.examples.greeter.v1.Greeter

  # One service key, as JSON:
  storks registry ls --registry etcd://127.0.0.1:2379/storks --version v1 -o json \
      storks.examples.greeter.v1.Greeter`,
		Args: rangeArgs(0, 1, "at most one SERVICE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLs(cmd, f, args)
		},
	}
	fl := cmd.Flags()
	registryFlag(cmd, &f.registry)
	fl.StringVar(&f.version, "version", "", "list only this version of SERVICE")
	fl.StringVar(&f.group, "group", "", "list only this group of SERVICE")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Second, "give up if the registry does not answer within this time")
	fl.StringVarP(&f.output, "output", "o", "table", "output format: table or json")
	fl.BoolVar(&f.noCons, "no-consumers", false, "do not list the consumers")
	return cmd
}

// keyInstances is one service key and its instances.
type keyInstances struct {
	key       registry.ServiceKey
	instances []registry.Instance
}

func runLs(cmd *cobra.Command, f lsFlags, args []string) error {
	if f.registry == "" {
		return usagef("--registry is required (or set $STORKS_REGISTRY)%s", helpHint(cmd))
	}
	if err := checkOutput(f.output); err != nil {
		return usagef("%v%s", err, helpHint(cmd))
	}
	exact := cmd.Flags().Changed("version") || cmd.Flags().Changed("group")
	if len(args) == 0 && exact {
		return usagef("--version and --group need a SERVICE%s", helpHint(cmd))
	}
	var service string
	if len(args) == 1 {
		service = args[0]
		key := registry.ServiceKey{Service: service, Version: f.version, Group: f.group}
		if err := key.Validate(); err != nil {
			return usagef("%v", err)
		}
	}

	ctx, cancel := withTimeout(cmd.Context(), f.timeout)
	defer cancel()
	reg, err := openRegistry(ctx, f.registry, f.timeout)
	if err != nil {
		return err
	}
	defer reg.Close()

	var keys, consumerKeys []registry.ServiceKey
	lister, canList := reg.(registry.Lister)
	switch {
	case exact || (service != "" && !canList):
		keys = []registry.ServiceKey{{Service: service, Version: f.version, Group: f.group}}
		if canList {
			consumerKeys = []registry.ServiceKey{registry.ConsumerKey(keys[0])}
		}
	case !canList:
		return fmt.Errorf("this registry cannot list its services (it does not implement registry.Lister); name one: %s --registry URL SERVICE",
			cmd.CommandPath())
	default:
		all, err := lister.Services(ctx)
		if err != nil {
			return registryError("listing services", ctx, f.timeout, err)
		}
		for _, k := range all {
			switch {
			case service != "" && k.ProviderKey().Service != service:
			case k.IsConsumer():
				consumerKeys = append(consumerKeys, k)
			default:
				keys = append(keys, k)
			}
		}
	}
	if f.noCons {
		consumerKeys = nil
	}

	var result []keyInstances
	for _, k := range keys {
		list, err := reg.Discover(ctx, k)
		if err != nil {
			return registryError("discovering "+k.String(), ctx, f.timeout, err)
		}
		result = append(result, keyInstances{key: k, instances: list})
	}
	var consumers []keyInstances
	for _, k := range consumerKeys {
		list, err := reg.Discover(ctx, k)
		if err != nil {
			return registryError("discovering the consumers of "+k.ProviderKey().String(), ctx, f.timeout, err)
		}
		if len(list) > 0 {
			consumers = append(consumers, keyInstances{key: k.ProviderKey(), instances: list})
		}
	}
	if f.output == "json" {
		return printJSONList(cmd.OutOrStdout(), result, consumers)
	}
	n := 0
	for _, r := range result {
		n += len(r.instances)
	}
	if n == 0 && len(consumers) > 0 {
		fmt.Fprintln(cmd.ErrOrStderr(), "storks: no providers; consumers:")
		return printConsumers(cmd.OutOrStdout(), consumers, time.Now())
	}
	if n == 0 {
		switch {
		case service == "":
			fmt.Fprintln(cmd.ErrOrStderr(), "storks: no services registered")
		case exact || canList:
			fmt.Fprintf(cmd.ErrOrStderr(), "storks: no instances of %s\n", describeKeys(service, f, exact))
		default:
			fmt.Fprintf(cmd.ErrOrStderr(), "storks: no instances of %s (this registry cannot list versions and groups; give --version or --group if the providers use them)\n", service)
		}
		return nil
	}
	if err := printTable(cmd.OutOrStdout(), result); err != nil || len(consumers) == 0 {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout())
	return printConsumers(cmd.OutOrStdout(), consumers, time.Now())
}

// printConsumers prints one line per consumer record.
func printConsumers(w io.Writer, consumers []keyInstances, now time.Time) error {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONSUMERS OF\tVERSION\tGROUP\tAPPLICATION\tADDRESS\tPID\tUP\tSTORKS")
	for _, r := range consumers {
		k := r.key
		for _, in := range r.instances {
			md := in.Metadata
			up := display.Age(md, registry.MetadataStartedAt, now)
			host, _, _ := strings.Cut(in.Addr, ":")
			if h, _, err := net.SplitHostPort(in.Addr); err == nil {
				host = h
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.Service, dash(k.Version), dash(k.Group),
				dash(md[registry.MetadataApplication]), host, dash(md[registry.MetadataPID]), up, dash(md[registry.MetadataStorks]))
		}
	}
	tw.Flush()
	_, err := w.Write(b.Bytes())
	return err
}

func describeKeys(service string, f lsFlags, exact bool) string {
	if exact {
		return registry.ServiceKey{Service: service, Version: f.version, Group: f.group}.String()
	}
	return service + " in any version or group"
}

// printTable prints one line per instance, and one per key without any.
// The registration time and published load (registry.MetadataRegisteredAt
// and registry.MetadataLoad) have columns of their own, AGE and LOAD, and
// are left out of METADATA.
func printTable(w io.Writer, result []keyInstances) error {
	return printTableAt(w, result, time.Now())
}

func printTableAt(w io.Writer, result []keyInstances, now time.Time) error {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tVERSION\tGROUP\tID\tADDRESS\tWEIGHT\tAGE\tLOAD\tMETADATA")
	for _, r := range result {
		k := r.key
		if len(r.instances) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t(none)\t\t\t\t\t\n", k.Service, dash(k.Version), dash(k.Group))
		}
		for _, in := range r.instances {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", k.Service, dash(k.Version), dash(k.Group),
				in.ID, in.Addr, in.EffectiveWeight(), display.Age(in.Metadata, registry.MetadataRegisteredAt, now), display.Load(in.Metadata),
				formatMetadata(in.Metadata, registry.MetadataRegisteredAt, registry.MetadataLoad))
		}
	}
	tw.Flush()
	_, err := w.Write(b.Bytes())
	return err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// formatMetadata renders metadata as sorted k=v pairs but for the keys
// left out, "-" if there is none.
func formatMetadata(md map[string]string, leaveOut ...string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(md)) {
		if !slices.Contains(leaveOut, k) {
			parts = append(parts, k+"="+quoteIfNeeded(md[k]))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ",")
}

func quoteIfNeeded(v string) string {
	if v == "" || strings.ContainsAny(v, " \t\r\n,=\"") {
		return strconv.Quote(v)
	}
	return v
}

// instanceJSON is an instance in -o json output.
type instanceJSON struct {
	ID       string            `json:"id"`
	Addr     string            `json:"addr"`
	Weight   int               `json:"weight"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// keyJSON is a service key in -o json output.
type keyJSON struct {
	Service string `json:"service"`
	Version string `json:"version,omitempty"`
	Group   string `json:"group,omitempty"`
}

func toKeyJSON(k registry.ServiceKey) keyJSON { return keyJSON{k.Service, k.Version, k.Group} }

func toInstancesJSON(list []registry.Instance) []instanceJSON {
	out := make([]instanceJSON, 0, len(list))
	for _, in := range list {
		out = append(out, instanceJSON{ID: in.ID, Addr: in.Addr, Weight: in.EffectiveWeight(), Metadata: in.Metadata})
	}
	return out
}

func printJSONList(w io.Writer, result, consumers []keyInstances) error {
	type entry struct {
		keyJSON
		Instances []instanceJSON `json:"instances"`
		Consumers []instanceJSON `json:"consumers,omitempty"`
	}
	out := make([]entry, 0, len(result))
	for _, r := range result {
		e := entry{keyJSON: toKeyJSON(r.key), Instances: toInstancesJSON(r.instances)}
		for _, c := range consumers {
			if c.key == r.key {
				e.Consumers = toInstancesJSON(c.instances)
			}
		}
		out = append(out, e)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func checkOutput(o string) error {
	if o != "table" && o != "json" {
		return fmt.Errorf("--output %q is not table or json", o)
	}
	return nil
}

// withTimeout is context.WithTimeout, where 0 means no timeout.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// registryError describes a failed registry operation, saying so when the
// deadline was what failed it.
func registryError(what string, ctx context.Context, timeout time.Duration, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("registry: %s: %v (no answer within --timeout %v)", what, err, timeout)
	}
	return fmt.Errorf("registry: %s: %v", what, err)
}

type watchFlags struct {
	registry string
	version  string
	group    string
	timeout  time.Duration
	output   string
}

func newWatchCmd() *cobra.Command {
	var f watchFlags
	cmd := &cobra.Command{
		Use:   "watch --registry URL [--version V] [--group G] SERVICE",
		Short: "Print every change of a service's instances until interrupted",
		Long: `watch follows the instances of one service key, as consumers do, and prints
each new list as it changes: first the current list, then on every change the
instances that were added (+) and removed (-; a changed instance is removed and
added again) followed by the whole new list. It runs until interrupted (Ctrl-C),
and then exits with status 0.

With -o json it prints one JSON object per change, on one line:
{"time", "key", "instances", "added", "removed"}.`,
		Example: `  storks registry watch --registry etcd://127.0.0.1:2379/storks storks.examples.greeter.v1.Greeter

  # Version v1 in group blue, as JSON lines:
  storks registry watch --registry etcd://127.0.0.1:2379/storks --version v1 --group blue -o json \
      storks.examples.greeter.v1.Greeter`,
		Args: exactArgs(1, "the SERVICE to watch"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runWatch(cmd, f, args[0])
		},
	}
	fl := cmd.Flags()
	registryFlag(cmd, &f.registry)
	fl.StringVar(&f.version, "version", "", "version of the service key")
	fl.StringVar(&f.group, "group", "", "group of the service key")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Second, "give up if the registry does not answer the first request within this time")
	fl.StringVarP(&f.output, "output", "o", "table", "output format: table or json")
	return cmd
}

func runWatch(cmd *cobra.Command, f watchFlags, service string) error {
	if f.registry == "" {
		return usagef("--registry is required (or set $STORKS_REGISTRY)%s", helpHint(cmd))
	}
	if err := checkOutput(f.output); err != nil {
		return usagef("%v%s", err, helpHint(cmd))
	}
	key := registry.ServiceKey{Service: service, Version: f.version, Group: f.group}
	if err := key.Validate(); err != nil {
		return usagef("%v", err)
	}
	ctx := cmd.Context()
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()

	// The timeout bounds opening the registry and the first list.
	octx, cancel := withTimeout(ctx, f.timeout)
	defer cancel()
	reg, err := openRegistry(octx, f.registry, f.timeout)
	if err != nil {
		if ctx.Err() != nil {
			return nil // interrupted
		}
		return err
	}
	defer reg.Close()
	w, err := reg.Watch(ctx, key)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return registryError("watching "+key.String(), octx, f.timeout, err)
	}
	defer w.Stop()
	list, err := w.Next(octx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return registryError("watching "+key.String(), octx, f.timeout, err)
	}
	cancel()
	// From now on, the adapter's warnings (lost connection, watch
	// interrupted) are the only sign of an outage: show them.
	adapterLog.setOn(true)

	var prev []registry.Instance
	first := true
	backoff := 100 * time.Millisecond
	failing := false
	for {
		if err := printChange(stdout, f.output, key, prev, list, first); err != nil {
			return err
		}
		prev, first = list, false
		for {
			list, err = w.Next(ctx)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil // interrupted: the normal way to stop
			}
			if errors.Is(err, registry.ErrClosed) {
				return fmt.Errorf("registry: the watch of %s ended: %v", key, err)
			}
			// Like a consumer, keep the last list and try again.
			if !failing {
				fmt.Fprintf(stderr, "storks: warning: watching %s failed, retrying: %v\n", key, err)
				failing = true
			}
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil
			}
			backoff = min(2*backoff, 5*time.Second)
		}
		if failing {
			fmt.Fprintf(stderr, "storks: watching %s recovered\n", key)
			failing, backoff = false, 100*time.Millisecond
		}
	}
}

// diffLists returns the instances of next that are not in prev and those of
// prev that are not in next. An instance whose ID stayed but whose address,
// weight or metadata changed is in both.
func diffLists(prev, next []registry.Instance) (added, removed []registry.Instance) {
	byID := func(list []registry.Instance) map[string]registry.Instance {
		m := make(map[string]registry.Instance, len(list))
		for _, in := range list {
			m[in.ID] = in
		}
		return m
	}
	p, n := byID(prev), byID(next)
	for _, in := range next {
		if old, ok := p[in.ID]; !ok || !sameInstance(old, in) {
			added = append(added, in)
		}
	}
	for _, in := range prev {
		if cur, ok := n[in.ID]; !ok || !sameInstance(cur, in) {
			removed = append(removed, in)
		}
	}
	return added, removed
}

func sameInstance(a, b registry.Instance) bool {
	return a.Key == b.Key && a.ID == b.ID && a.Addr == b.Addr &&
		a.EffectiveWeight() == b.EffectiveWeight() && maps.Equal(a.Metadata, b.Metadata)
}

// printChange prints one list of a watch and how it differs from the last.
func printChange(w io.Writer, output string, key registry.ServiceKey, prev, list []registry.Instance, first bool) error {
	now := time.Now()
	added, removed := diffLists(prev, list)
	if output == "json" {
		b, err := json.Marshal(struct {
			Time      time.Time      `json:"time"`
			Key       keyJSON        `json:"key"`
			Instances []instanceJSON `json:"instances"`
			Added     []instanceJSON `json:"added"`
			Removed   []instanceJSON `json:"removed"`
		}{now, toKeyJSON(key), toInstancesJSON(list), toInstancesJSON(added), toInstancesJSON(removed)})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}

	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s: %s", now.Format("2006-01-02T15:04:05.000Z07:00"), key, plural(len(list), "instance"))
	if first {
		b.WriteString(" (current list)\n")
	} else {
		fmt.Fprintf(&b, " (+%d -%d)\n", len(added), len(removed))
	}
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	if !first {
		for _, in := range added {
			fmt.Fprintf(tw, "+ %s\n", instanceLine(in))
		}
		for _, in := range removed {
			fmt.Fprintf(tw, "- %s\n", instanceLine(in))
		}
	}
	for _, in := range list {
		fmt.Fprintf(tw, "  %s\n", instanceLine(in))
	}
	tw.Flush()
	if len(list) == 0 {
		b.WriteString("  (no instances)\n")
	}
	_, err := w.Write(b.Bytes())
	return err
}

func instanceLine(in registry.Instance) string {
	return fmt.Sprintf("%s\t%s\tweight=%d\t%s", in.ID, in.Addr, in.EffectiveWeight(), formatMetadata(in.Metadata))
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
