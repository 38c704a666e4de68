//! A real server process and a minimal HTTP/1.1 client for it: for the tests (and the load
//! benchmark, which includes this file) that must kill, restart or measure the server
//! itself rather than drive its router in process.
//!
//! The client keeps one connection alive, sends `Content-Length` bodies and reads
//! `Content-Length` or chunked responses: all the server sends.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// A response: status and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One keep-alive HTTP/1.1 connection to `addr`, reopened after an error.
pub struct Client {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    /// A client of the server at `addr` (connects on first use).
    pub fn new(addr: SocketAddr) -> Self {
        Client { addr, conn: None }
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&mut self, path: &str, headers: &[(&str, &str)], body: &str) -> std::io::Result<Reply> {
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        self.send(head.into_bytes(), body.as_bytes()).await
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Reply> {
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        self.send(head.into_bytes(), &[]).await
    }

    async fn send(&mut self, head: Vec<u8>, body: &[u8]) -> std::io::Result<Reply> {
        let result = self.exchange(&head, body).await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    async fn exchange(&mut self, head: &[u8], body: &[u8]) -> std::io::Result<Reply> {
        if self.conn.is_none() {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            self.conn = Some(BufReader::new(stream));
        }
        let conn = self.conn.as_mut().expect("connected");
        conn.get_mut().write_all(head).await?;
        conn.get_mut().write_all(body).await?;
        let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        let mut line = String::new();
        if conn.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the server closed the connection"));
        }
        let status: u16 =
            line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("status line"))?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        loop {
            line.clear();
            conn.read_line(&mut line).await?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').ok_or_else(|| bad("header"))?;
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "content-length" => length = Some(value.parse::<usize>().map_err(|_| bad("content-length"))?),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let mut bytes = Vec::new();
        if chunked {
            loop {
                line.clear();
                conn.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim(), 16).map_err(|_| bad("chunk size"))?;
                let mut chunk = vec![0; size + 2];
                conn.read_exact(&mut chunk).await?;
                if size == 0 {
                    break;
                }
                bytes.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(length) = length {
            bytes.resize(length, 0);
            conn.read_exact(&mut bytes).await?;
        } else {
            conn.read_to_end(&mut bytes).await?;
            close = true;
        }
        if close {
            self.conn = None;
        }
        Ok(Reply { status, body: String::from_utf8_lossy(&bytes).into_owned() })
    }
}

/// A free port on 127.0.0.1 (bound, then released for the server to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// The server binary running `serve` on a database, as an operator would start it.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Server {
    /// Starts `binary serve` on `database_url` with the extra environment, and waits (at
    /// most 30 s) until `GET /health` answers 200.
    pub async fn start(binary: &Path, database_url: &str, env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env_remove("APP_ENV")
            .env_remove("NODE_ENV")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("the server binary starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
        let server = Server { child, addr };
        let started = Instant::now();
        let mut client = Client::new(addr);
        loop {
            if let Ok(reply) = client.get("/health", &[]).await {
                if reply.status == 200 {
                    return server;
                }
            }
            assert!(started.elapsed() < Duration::from_secs(30), "the server did not become healthy within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id.
    #[allow(dead_code)] // the load benchmark samples its memory
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the server is running")
    }

    /// Kills the server with SIGKILL (no shutdown of any kind) and reaps it.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("the killed server is reaped");
    }
}
