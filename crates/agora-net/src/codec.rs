//! Length-prefixed byte frames with a hard size cap, shared by request-response and the
//! consensus streams.

use std::io;

use bytes::Bytes;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::request_response;
use libp2p::StreamProtocol;

/// Write `data` as one `u32` big-endian length prefix plus payload, in a single write.
pub async fn write_frame<T: AsyncWrite + Unpin>(io: &mut T, data: &[u8]) -> io::Result<()> {
    let len = u32::try_from(data.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut buf = Vec::with_capacity(4 + data.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(data);
    io.write_all(&buf).await?;
    io.flush().await
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes over the cap of {cap}")]
    Oversize { len: usize, cap: usize },
    #[error("io: {0}")]
    Io(#[from] io::Error),
}

/// Read the length prefix of the next frame; `Ok(None)` on a clean end of stream.
pub async fn read_len<T: AsyncRead + Unpin>(
    io: &mut T,
    cap: usize,
) -> Result<Option<usize>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = io.read(&mut len[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into()))
            };
        }
        got += n;
    }
    let len = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
    if len > cap {
        return Err(FrameError::Oversize { len, cap });
    }
    Ok(Some(len))
}

/// Read one frame of at most `cap` bytes; `Ok(None)` on a clean end of stream.
pub async fn read_frame<T: AsyncRead + Unpin>(
    io: &mut T,
    cap: usize,
) -> Result<Option<Bytes>, FrameError> {
    let Some(len) = read_len(io, cap).await? else {
        return Ok(None);
    };
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(Some(Bytes::from(buf)))
}

/// Request-response codec: one capped frame each way, then the writer closes its side.
#[derive(Debug, Clone, Copy)]
pub struct BytesCodec {
    pub max_request: usize,
    pub max_response: usize,
}

fn to_io(e: FrameError) -> io::Error {
    match e {
        FrameError::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

async fn read_one<T: AsyncRead + Unpin>(io: &mut T, cap: usize) -> io::Result<Bytes> {
    match read_frame(io, cap).await.map_err(to_io)? {
        Some(b) => Ok(b),
        None => Err(io::ErrorKind::UnexpectedEof.into()),
    }
}

impl request_response::Codec for BytesCodec {
    type Protocol = StreamProtocol;
    type Request = Bytes;
    type Response = Bytes;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Bytes>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_one(io, self.max_request).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Bytes>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_one(io, self.max_response).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Bytes,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Bytes,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res).await?;
        io.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    #[tokio::test]
    async fn frames_round_trip_and_oversize_is_refused() {
        let mut buf = Cursor::new(Vec::new());
        write_frame(&mut buf, b"hello").await.unwrap();
        write_frame(&mut buf, &[7u8; 100]).await.unwrap();
        let mut r = Cursor::new(buf.into_inner());
        assert_eq!(
            read_frame(&mut r, 64).await.unwrap().unwrap(),
            Bytes::from_static(b"hello")
        );
        assert!(matches!(
            read_frame(&mut r, 64).await,
            Err(FrameError::Oversize { len: 100, cap: 64 })
        ));
    }

    #[tokio::test]
    async fn clean_and_truncated_ends() {
        let mut empty = Cursor::new(Vec::<u8>::new());
        assert!(read_frame(&mut empty, 10).await.unwrap().is_none());
        let mut short = Cursor::new(vec![0u8, 0]);
        assert!(matches!(
            read_frame(&mut short, 10).await,
            Err(FrameError::Io(_))
        ));
        let mut body_short = Cursor::new(vec![0u8, 0, 0, 5, 1, 2]);
        assert!(matches!(
            read_frame(&mut body_short, 10).await,
            Err(FrameError::Io(_))
        ));
    }
}
