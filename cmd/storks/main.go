package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/grpclog"

	"github.com/storks-rpc/storks/internal/gen"

	_ "github.com/storks-rpc/storks/registry/all"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first SIGINT or SIGTERM cancels ctx, and commands wind down; a
	// second one kills the process the usual way.
	context.AfterFunc(ctx, stop)
	// The registry adapters talk gRPC (etcd); its logging would interleave
	// with the output. Errors reach the user through the commands.
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, io.Discard))
	// The adapters themselves log to the default slog logger; see
	// adapterLog.
	adapterLog = newGatedHandler(os.Stderr)
	slog.SetDefault(slog.New(adapterLog))
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1 // the command failed
	exitUsage = 2 // the command line is wrong
)

// run is main without the process: it runs the command line args and
// returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	printError(stderr, err)
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFail
}

// printError prints err as one line, "storks: <message>". Compile errors
// are the exception: they print one such line per error in the sources, as
// protoc does.
func printError(w io.Writer, err error) {
	var ce *gen.CompileError
	if errors.As(err, &ce) {
		for _, e := range ce.Errs {
			fmt.Fprintf(w, "storks: %s\n", oneLine(e))
		}
		return
	}
	fmt.Fprintf(w, "storks: %s\n", strings.TrimPrefix(oneLine(err.Error()), "storks: "))
}

// oneLine joins the lines of a message (some generators report several).
func oneLine(msg string) string {
	var parts []string
	for _, line := range strings.Split(msg, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			parts = append(parts, line)
		}
	}
	return strings.Join(parts, " ")
}

// usageError is a mistake in the command line: an unknown command or flag,
// a missing or extra argument, a flag value that does not parse.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef returns a usageError with a formatted message.
func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// helpHint returns the hint appended to usage errors of cmd.
func helpHint(cmd *cobra.Command) string {
	return fmt.Sprintf(" (see %q)", cmd.CommandPath()+" --help")
}
