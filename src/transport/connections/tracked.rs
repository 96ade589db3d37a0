//! The open connections of one listener, and the IO type each one is served
//! through: it fails reads once the handshake timeout passes without a full
//! HTTP/2 preface, and all IO once the registry closes it.
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Length of the HTTP/2 client connection preface, `PRI * HTTP/2.0…`.
const PREFACE_LEN: usize = 24;

const PENDING: u8 = 0;
const ESTABLISHED: u8 = 1;
/// Closed by the registry (eviction or shutdown); the stream fails all IO.
const CLOSING: u8 = 2;

struct Slot {
    state: AtomicU8,
    /// The task serving the connection, woken to notice CLOSING.
    waker: AtomicWaker,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    open: HashMap<u64, Arc<Slot>>,
    /// Ids in accept order; entries no longer pending are skipped, and
    /// pruned when they pile up.
    order: VecDeque<u64>,
    pending: usize,
    closing: usize,
    /// Connections closed so far, so the acceptor can wait for the next one.
    closed: u64,
}

/// Every open connection of one listener.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
    /// The acceptor, woken whenever a connection closes.
    acceptor: AtomicWaker,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Open connections, not counting those already told to close.
    pub fn live(&self) -> usize {
        let inner = self.lock();
        inner.open.len() - inner.closing
    }

    /// With at least `max` connections open and none still in its
    /// handshake, the number closed so far (to wait for the next close).
    pub fn full_of_established(&self, max: usize) -> Option<u64> {
        let inner = self.lock();
        (inner.open.len() - inner.closing >= max && inner.pending == 0).then_some(inner.closed)
    }

    pub fn closed(&self) -> u64 {
        self.lock().closed
    }

    pub fn register_acceptor(&self, waker: &Waker) {
        self.acceptor.register(waker);
    }

    pub fn track(self: &Arc<Self>, io: TcpStream, handshake_timeout: Duration) -> TrackedStream {
        let slot = Arc::new(Slot {
            state: AtomicU8::new(PENDING),
            waker: AtomicWaker::new(),
        });
        let id = {
            let mut inner = self.lock();
            let id = inner.next_id;
            inner.next_id += 1;
            inner.open.insert(id, slot.clone());
            inner.order.push_back(id);
            inner.pending += 1;
            if inner.order.len() > 2 * inner.open.len() + 64 {
                let Inner { open, order, .. } = &mut *inner;
                order.retain(|id| open.get(id).is_some_and(|s| s.state() == PENDING));
            }
            id
        };
        TrackedStream {
            io,
            received: 0,
            deadline: Some(Box::pin(tokio::time::sleep(handshake_timeout))),
            slot,
            guard: Guard {
                registry: self.clone(),
                id,
            },
        }
    }

    /// Closes the oldest connection still waiting for its preface; false if
    /// there is none.
    pub fn evict_oldest_pending(&self) -> bool {
        let mut inner = self.lock();
        while let Some(id) = inner.order.pop_front() {
            let Some(slot) = inner.open.get(&id).cloned() else {
                continue;
            };
            if slot.transition(PENDING, CLOSING) {
                inner.pending -= 1;
                inner.closing += 1;
                slot.waker.wake();
                return true;
            }
        }
        false
    }

    /// Closes every open connection; returns how many there were.
    pub fn close_all(&self) -> usize {
        let mut inner = self.lock();
        let Inner {
            open,
            pending,
            closing,
            ..
        } = &mut *inner;
        for slot in open.values() {
            match slot.state.swap(CLOSING, Ordering::AcqRel) {
                CLOSING => continue,
                PENDING => *pending -= 1,
                _ => {}
            }
            *closing += 1;
            slot.waker.wake();
        }
        open.len()
    }

    fn established(&self, slot: &Slot) {
        let mut inner = self.lock();
        if slot.transition(PENDING, ESTABLISHED) {
            inner.pending -= 1;
        }
    }

    fn remove(&self, id: u64) {
        {
            let mut inner = self.lock();
            if let Some(slot) = inner.open.remove(&id) {
                match slot.state() {
                    PENDING => inner.pending -= 1,
                    CLOSING => inner.closing -= 1,
                    _ => {}
                }
            }
            inner.closed += 1;
        }
        self.acceptor.wake();
    }
}

impl Slot {
    fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    fn transition(&self, from: u8, to: u8) -> bool {
        self.state
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// Removes its connection from the registry when dropped.
struct Guard {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

/// A TCP connection as the gRPC server sees it.
pub struct TrackedStream {
    // Declared first so it is dropped (the socket closed) before the guard
    // tells the acceptor a descriptor is free.
    io: TcpStream,
    received: usize,
    /// Until the preface is complete.
    deadline: Option<Pin<Box<Sleep>>>,
    slot: Arc<Slot>,
    guard: Guard,
}

impl TrackedStream {
    /// Registers the serving task for wake-ups and fails if the registry
    /// closed this connection.
    fn check_open(&self, cx: &Context<'_>) -> io::Result<()> {
        self.slot.waker.register(cx.waker());
        if self.slot.state() == CLOSING {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection closed by the server (connection limit or shutdown)",
            ));
        }
        Ok(())
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_open(cx)?;
        if let Some(deadline) = &mut this.deadline {
            // Polled here so that the timer wakes the task even when no byte comes.
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no HTTP/2 preface within the handshake timeout",
                )));
            }
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        if this.deadline.is_some() {
            this.received += buf.filled().len() - before;
            if this.received >= PREFACE_LEN {
                this.deadline = None;
                this.guard.registry.established(&this.slot);
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check_open(cx)?;
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check_open(cx)?;
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_open(cx)?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl Connected for TrackedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}
