"""What the gateway shows the people who run it: Prometheus metrics and Grafana dashboards."""
