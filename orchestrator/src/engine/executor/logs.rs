//! Task log lines to `task_log`, as they come: operators write to a sink that sends lines to one
//! writer task per process, which inserts them in batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use updraft_secrets::Masker;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use updraft_operators::LogSink;

const MAX_BATCH: usize = 2000;

pub enum LogMessage {
    Line {
        task_instance_id: i64,
        try_number: i32,
        line: String,
    },
    /// Answered once every line sent before it is written.
    Flush(oneshot::Sender<()>),
}

/// Starts the writer; it ends when every sender is dropped.
pub fn start_writer(pool: PgPool) -> mpsc::UnboundedSender<LogMessage> {
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(write_loop(pool, receiver));
    sender
}

async fn write_loop(pool: PgPool, mut receiver: mpsc::UnboundedReceiver<LogMessage>) {
    let mut ids = Vec::new();
    let mut tries = Vec::new();
    let mut lines = Vec::new();
    let mut flushes = Vec::new();
    while let Some(first) = receiver.recv().await {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                LogMessage::Line {
                    task_instance_id,
                    try_number,
                    line,
                } => {
                    ids.push(task_instance_id);
                    tries.push(try_number);
                    lines.push(line);
                }
                LogMessage::Flush(done) => flushes.push(done),
            }
            if ids.len() < MAX_BATCH {
                next = receiver.try_recv().ok();
            }
        }
        if !ids.is_empty() {
            write_batch(&pool, &ids, &tries, &lines).await;
            ids.clear();
            tries.clear();
            lines.clear();
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

async fn write_batch(pool: &PgPool, ids: &[i64], tries: &[i32], lines: &[String]) {
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=5 {
        match crate::store::logs::append(pool, ids, tries, lines).await {
            Ok(_) => return,
            Err(error) => {
                tracing::warn!(%error, attempt, lines = lines.len(), "cannot write task log lines");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    tracing::error!(
        lines = lines.len(),
        "task log lines dropped after 5 attempts"
    );
}

/// The sink of one try.
pub struct DbLogSink {
    task_instance_id: i64,
    try_number: i32,
    sender: mpsc::UnboundedSender<LogMessage>,
    written: AtomicUsize,
    /// The secrets revealed to the try: masked in every line it stores.
    masker: Arc<Masker>,
}

impl DbLogSink {
    pub fn new(
        task_instance_id: i64,
        try_number: i32,
        sender: mpsc::UnboundedSender<LogMessage>,
        masker: Arc<Masker>,
    ) -> Arc<DbLogSink> {
        Arc::new(DbLogSink {
            task_instance_id,
            try_number,
            sender,
            written: AtomicUsize::new(0),
            masker,
        })
    }

    /// Waits until this try's lines are stored (no wait when it wrote none).
    pub async fn flush(&self) {
        if self.written.load(Ordering::Relaxed) == 0 {
            return;
        }
        let (done, wait) = oneshot::channel();
        if self.sender.send(LogMessage::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

impl LogSink for DbLogSink {
    fn write_line(&self, line: &str) {
        self.written.fetch_add(1, Ordering::Relaxed);
        let _ = self.sender.send(LogMessage::Line {
            task_instance_id: self.task_instance_id,
            try_number: self.try_number,
            line: self.masker.mask(line),
        });
    }
}
