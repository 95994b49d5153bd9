//! The log callback: a tracing layer, installed on the node's own thread only, so that each
//! node of a process logs to its own callback.

use crate::callbacks::LogSink;
use std::fmt::Write as _;
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// Log levels passed to the callback.
pub fn level_number(l: &tracing::Level) -> i32 {
    match *l {
        tracing::Level::ERROR => 1,
        tracing::Level::WARN => 2,
        tracing::Level::INFO => 3,
        tracing::Level::DEBUG => 4,
        tracing::Level::TRACE => 5,
    }
}

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

struct CallbackLayer(LogSink);

impl<S: tracing::Subscriber> Layer<S> for CallbackLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut line = Line(String::new());
        event.record(&mut line);
        let meta = event.metadata();
        self.0.log(
            level_number(meta.level()),
            &format!("{}: {}", meta.target(), line.0),
        );
    }
}

/// A subscriber sending events that pass `filter` (the config's `log_level`) to `sink`.
pub fn subscriber(
    sink: LogSink,
    filter: &str,
) -> anyhow::Result<impl tracing::Subscriber + Send + Sync> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("log_level {filter:?}: {e}"))?;
    Ok(tracing_subscriber::registry()
        .with(filter)
        .with(CallbackLayer(sink)))
}
