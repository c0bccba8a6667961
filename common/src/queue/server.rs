//! What a RabbitMQ node says of itself to a connecting client (the server properties of
//! `Connection.Start`): its product and version, for the system page. Read with a bare
//! handshake — the protocol header sent, the first frame read, the connection dropped
//! before any login — because the client library keeps those properties to itself.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest first frame read (RabbitMQ's is under 1 KiB).
const MAX_FRAME: usize = 64 * 1024;

/// `"RabbitMQ 3.10.8"` from the node at `host:port` (plain AMQP).
pub async fn version(host: &str, port: u16, timeout: Duration) -> Result<String, String> {
    let read = async {
        let mut stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        stream
            .write_all(b"AMQP\x00\x00\x09\x01")
            .await
            .map_err(|e| format!("cannot send the protocol header: {e}"))?;
        let mut header = [0u8; 7];
        stream
            .read_exact(&mut header)
            .await
            .map_err(|e| format!("no answer to the protocol header: {e}"))?;
        if header[0] != 1 {
            return Err(format!("the first frame is of type {}, not a method", header[0]));
        }
        let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
        if size > MAX_FRAME {
            return Err(format!("a first frame of {size} bytes"));
        }
        let mut payload = vec![0u8; size];
        stream
            .read_exact(&mut payload)
            .await
            .map_err(|e| format!("the first frame is cut short: {e}"))?;
        start_version(&payload)
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("the frame ends early".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<usize, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    /// A field value of type `kind`: its text for a long string, `None` for the rest
    /// (skipped by their size).
    fn value(&mut self, kind: u8) -> Result<Option<String>, String> {
        let skip = match kind {
            b'S' => {
                let n = self.u32()?;
                return Ok(Some(String::from_utf8_lossy(self.take(n)?).into_owned()));
            }
            b'F' | b'A' | b'x' => self.u32()?,
            b't' | b'b' | b'B' => 1,
            b's' | b'u' => 2,
            b'I' | b'i' | b'f' => 4,
            b'l' | b'L' | b'd' | b'T' => 8,
            b'D' => 5,
            b'V' => 0,
            other => return Err(format!("a field of unknown type `{}`", char::from(other))),
        };
        self.take(skip)?;
        Ok(None)
    }
}

/// The product and version named by a `Connection.Start` method frame's payload.
fn start_version(payload: &[u8]) -> Result<String, String> {
    let mut r = Reader(payload);
    if (r.u16()?, r.u16()?) != (10, 10) {
        return Err("the first method is not Connection.Start".into());
    }
    r.take(2)?; // protocol version
    let length = r.u32()?;
    let mut table = Reader(r.take(length)?);
    let (mut product, mut version) = (None, None);
    while !table.0.is_empty() {
        let name_length = usize::from(table.u8()?);
        let name = String::from_utf8_lossy(table.take(name_length)?).into_owned();
        let kind = table.u8()?;
        let value = table.value(kind)?;
        match name.as_str() {
            "product" => product = value,
            "version" => version = value,
            _ => {}
        }
    }
    let version = version.ok_or("the server names no version")?;
    Ok(match product {
        Some(product) => format!("{product} {version}"),
        None => version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(out: &mut Vec<u8>, name: &str, kind: u8, value: &[u8]) {
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.push(kind);
        out.extend_from_slice(value);
    }

    fn long(text: &str) -> Vec<u8> {
        let mut out = (text.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(text.as_bytes());
        out
    }

    #[test]
    fn the_start_frame_names_product_and_version() {
        let mut table = Vec::new();
        let mut capabilities = Vec::new();
        entry(&mut capabilities, "publisher_confirms", b't', &[1]);
        let mut nested = (capabilities.len() as u32).to_be_bytes().to_vec();
        nested.extend_from_slice(&capabilities);
        entry(&mut table, "capabilities", b'F', &nested);
        entry(&mut table, "product", b'S', &long("RabbitMQ"));
        entry(&mut table, "frame_max", b'I', &[0, 2, 0, 0]);
        entry(&mut table, "version", b'S', &long("3.10.8"));
        let mut payload = vec![0, 10, 0, 10, 0, 9];
        payload.extend_from_slice(&(table.len() as u32).to_be_bytes());
        payload.extend_from_slice(&table);
        assert_eq!(start_version(&payload), Ok("RabbitMQ 3.10.8".to_owned()));
        assert!(start_version(&payload[..payload.len() - 3]).is_err(), "cut short");
        assert!(start_version(&[0, 20, 0, 10]).is_err(), "another method");
    }
}
