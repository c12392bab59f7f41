// Package health reports the registration and discovery state of Storks
// servers and clients, as metrics and as an HTTP readiness handler: whether
// each export is registered and how long ago it was last written to the
// registry, how many providers each reference knows, has live and has
// ejected, and whether each registry answers. No other RPC framework says
// this, and it is what hurts most in a registry-based system: "is this
// provider actually registered right now, and does this consumer actually
// see any providers?"
//
//	src := health.New(health.WithServer(srv), health.WithClient(cli))
//	http.Handle("/healthz", src.Handler())              // 503 while an export is unregistered or a reference has no provider
//	unregister, err := src.RegisterMetrics(meterProvider) // storks.export.registered, storks.reference.providers, ...
//
// The state comes from the runtime's snapshots (storks.Server.Registrations,
// storks.Client.ProviderState) and registry checks
// (storks.Server.CheckRegistry, storks.Client.CheckRegistries), made at most
// once per interval (WithRegistryCheck) however often the handler is probed
// or the metrics collected.
//
// A registered export whose registry cannot be reached is "stale": the
// runtime's last write succeeded, but whether the registry still lists it
// (a lease may expire) is unknown. The handler reports it and stays ready
// unless made with RequireRegistry: see there why.
//
// Export the metrics to Prometheus with observability/promstorks.
package health
