"""The lecture's experiments: initialization probes, weight movement, optimizer studies, Newton."""
