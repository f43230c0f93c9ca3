//! The benchmark baseline: a proxy-wasm network filter that does the least a
//! metering filter must do, count the bytes each way in two Envoy counters
//! (`wasmcustom.noop_downstream_bytes`, `wasmcustom.noop_upstream_bytes`),
//! without reading them. Always `Action::Continue`.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, RootContext, StreamContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default, Clone, Copy)]
struct Ids {
    down: u32,
    up: u32,
}

#[derive(Default)]
struct Root {
    ids: Ids,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let define = |n: &str| hostcalls::define_metric(MetricType::Counter, n).unwrap_or(0);
        self.ids = Ids {
            down: define("noop_downstream_bytes"),
            up: define("noop_upstream_bytes"),
        };
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::StreamContext)
    }

    fn create_stream_context(&self, _: u32) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(Conn { ids: self.ids }))
    }
}

struct Conn {
    ids: Ids,
}

impl Context for Conn {}

impl StreamContext for Conn {
    fn on_downstream_data(&mut self, size: usize, _: bool) -> Action {
        let _ = hostcalls::increment_metric(self.ids.down, size as i64);
        Action::Continue
    }

    fn on_upstream_data(&mut self, size: usize, _: bool) -> Action {
        let _ = hostcalls::increment_metric(self.ids.up, size as i64);
        Action::Continue
    }
}
