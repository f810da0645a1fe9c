//! Driving one SSH exec channel: send the command, feed stdin from a file (or close it
//! at once), collect stdout into memory or a file and stderr into memory, and report how
//! the command ended. On the deadline the command is signalled and the channel closed.

use std::path::PathBuf;

use russh::client::Msg;
use russh::{Channel, ChannelMsg, Sig};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::{ExitStatus, MAX_OUTPUT};

/// Where a channel's stdout goes.
pub(crate) enum Sink {
    Memory(Vec<u8>),
    File(tokio::fs::File),
}

/// How a channel run ended, before it is turned into a `ControlError` by the caller,
/// which knows the node and what was being done.
pub(crate) enum ChanFailure {
    Timeout,
    Refused,
    TooLarge(&'static str),
    Lost(String),
    LocalIo(String),
}

pub(crate) struct ChanDone {
    pub status: ExitStatus,
    pub stdout: Sink,
    pub stderr: Vec<u8>,
}

async fn feed_stdin(
    tx: &russh::ChannelWriteHalf<Msg>,
    stdin: Option<PathBuf>,
) -> Result<(), String> {
    if let Some(path) = stdin {
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        tx.data(file).await.map_err(|e| e.to_string())?;
    }
    tx.eof().await.map_err(|e| e.to_string())
}

async fn read_all(
    rx: &mut russh::ChannelReadHalf,
    mut stdout: Sink,
) -> Result<ChanDone, ChanFailure> {
    let mut stderr = Vec::new();
    let mut status = None;
    let mut mem_len = 0usize;
    loop {
        match rx.wait().await {
            Some(ChannelMsg::Data { data }) => match &mut stdout {
                Sink::Memory(buf) => {
                    mem_len += data.len();
                    if mem_len > MAX_OUTPUT {
                        return Err(ChanFailure::TooLarge("stdout"));
                    }
                    buf.extend_from_slice(&data);
                }
                Sink::File(f) => f
                    .write_all(&data)
                    .await
                    .map_err(|e| ChanFailure::LocalIo(e.to_string()))?,
            },
            Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                if stderr.len() + data.len() > MAX_OUTPUT {
                    return Err(ChanFailure::TooLarge("stderr"));
                }
                stderr.extend_from_slice(&data);
            }
            Some(ChannelMsg::ExitStatus { exit_status }) => {
                status = Some(ExitStatus::Code(exit_status))
            }
            Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                status = Some(ExitStatus::Signal(sig_name(&signal_name)))
            }
            Some(ChannelMsg::Failure) => return Err(ChanFailure::Refused),
            Some(ChannelMsg::Close) | None => break,
            Some(_) => {}
        }
    }
    match status {
        Some(status) => Ok(ChanDone {
            status,
            stdout,
            stderr,
        }),
        None => Err(ChanFailure::Lost(
            "channel closed before the command reported an exit status".into(),
        )),
    }
}

fn sig_name(sig: &Sig) -> String {
    let s = format!("{sig:?}");
    match s
        .strip_prefix("Custom(\"")
        .and_then(|r| r.strip_suffix("\")"))
    {
        Some(inner) => inner.to_string(),
        None => s,
    }
}

/// Runs `cmd` on an open channel until it ends or `deadline` passes.
pub(crate) async fn run(
    channel: Channel<Msg>,
    cmd: &str,
    stdin: Option<PathBuf>,
    stdout: Sink,
    deadline: Instant,
) -> Result<ChanDone, ChanFailure> {
    let (mut rx, tx) = channel.split();
    let work = async {
        tx.exec(true, cmd)
            .await
            .map_err(|e| ChanFailure::Lost(e.to_string()))?;
        let writer = feed_stdin(&tx, stdin);
        let reader = read_all(&mut rx, stdout);
        tokio::pin!(writer, reader);
        let mut write_result: Option<Result<(), String>> = None;
        let done = loop {
            tokio::select! {
                r = &mut reader => break r,
                w = &mut writer, if write_result.is_none() => write_result = Some(w),
            }
        };
        match (done, write_result) {
            // A local read error means the remote side got a short stream; say why.
            (Ok(_), Some(Err(e))) if e.starts_with("reading ") => Err(ChanFailure::LocalIo(e)),
            (Ok(d), _) => Ok(d),
            (Err(e), _) => Err(e),
        }
    };
    match tokio::time::timeout_at(deadline, work).await {
        Ok(r) => {
            if r.is_err() {
                let _ = tx.close().await;
            }
            r
        }
        Err(_) => {
            let _ = tx.signal(Sig::KILL).await;
            let _ = tx.close().await;
            Err(ChanFailure::Timeout)
        }
    }
}
