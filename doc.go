// Package remediator is the domain core of remediator: the alerts that arrive, the incidents
// they open, the steps a remediation takes, the decisions policies make and the errors that
// say whether trying again makes sense. It imports nothing else of this module; every other
// package points at it, and cmd/remediator wires them together.
package remediator
