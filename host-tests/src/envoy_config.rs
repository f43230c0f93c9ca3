//! Generated Envoy configurations: a TCP listener whose filter chain is the tally
//! wasm filter (optional) in front of `tcp_proxy` to a Kafka broker.

use std::fmt::Write;
use std::path::Path;

/// One listener in front of the broker.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Name of the listener (also the stat prefix of its `tcp_proxy`).
    pub name: String,
    /// Port on 127.0.0.1.
    pub port: u16,
    /// The tally filter's JSON configuration; `None` = plain `tcp_proxy` (no wasm).
    pub plugin_config: Option<String>,
    /// Raw YAML for a `transport_socket` (TLS termination), indented for a filter chain.
    pub transport_socket: Option<String>,
}

/// Everything the generated config needs.
#[derive(Debug, Clone)]
pub struct EnvoyConfig<'a> {
    /// Admin port.
    pub admin_port: u16,
    /// The broker's port on 127.0.0.1.
    pub upstream_port: u16,
    /// The plugin `.wasm`.
    pub wasm: &'a Path,
    /// Listeners.
    pub listeners: Vec<Listener>,
    /// Extra clusters (raw YAML list items, indented by 2 spaces), e.g. a flush sink.
    pub extra_clusters: String,
    /// Raw YAML appended at the top level (e.g. `stats_config:`).
    pub extra_top_level: String,
}

impl EnvoyConfig<'_> {
    /// Renders the YAML.
    pub fn render(&self) -> String {
        let mut y = String::new();
        let _ = writeln!(
            y,
            "admin:\n  address:\n    socket_address: {{ address: 127.0.0.1, port_value: {} }}\nstatic_resources:\n  listeners:",
            self.admin_port
        );
        for l in &self.listeners {
            let _ = writeln!(
                y,
                "  - name: {name}\n    address:\n      socket_address: {{ address: 127.0.0.1, port_value: {port} }}\n    filter_chains:\n    - filters:",
                name = l.name,
                port = l.port
            );
            if let Some(cfg) = &l.plugin_config {
                let _ = writeln!(
                    y,
                    "      - name: envoy.filters.network.wasm
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm
          config:
            name: tally
            root_id: tally
            configuration:
              \"@type\": type.googleapis.com/google.protobuf.StringValue
              value: {cfg_json}
            vm_config:
              vm_id: tally
              runtime: envoy.wasm.runtime.v8
              code:
                local:
                  filename: {wasm}",
                    cfg_json = serde_json::to_string(cfg).unwrap_or_default(),
                    wasm = self.wasm.display()
                );
            }
            let _ = writeln!(
                y,
                "      - name: envoy.filters.network.tcp_proxy
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: {name}
          cluster: kafka",
                name = l.name
            );
            if let Some(ts) = &l.transport_socket {
                y.push_str(ts);
                if !ts.ends_with('\n') {
                    y.push('\n');
                }
            }
        }
        let _ = writeln!(
            y,
            "  clusters:\n  - name: kafka\n    connect_timeout: 2s\n    type: STATIC\n    load_assignment:\n      cluster_name: kafka\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            address:\n              socket_address: {{ address: 127.0.0.1, port_value: {} }}",
            self.upstream_port
        );
        y.push_str(&self.extra_clusters);
        y.push_str(&self.extra_top_level);
        y
    }
}
