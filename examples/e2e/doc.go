// Package e2e tests Storks end to end with the generated example code: real
// servers on loopback TCP, a registry, and typed generated clients.
package e2e
