//! Writes signed (and in safe mode encrypted) callback requests for `tests/bench/gateway.lua`:
//! one file per wrk thread, one `path<TAB>body` line per request, each with a unique MsgId and,
//! as WeChat sends them, its own nonce (the gateway binds a plaintext nonce to one message).
//!
//! Usage: `wxoa-bench-requests OUT COUNT THREADS APPID TOKEN [ENCODING_AES_KEY]`

use std::io::Write;

use wxoa_wire::crypto::AesKey;
use wxoa_wire::signature;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        anyhow::bail!(
            "usage: {} OUT COUNT THREADS APPID TOKEN [ENCODING_AES_KEY]",
            args[0]
        );
    }
    let (out, count, threads): (&str, u64, u64) = (&args[1], args[2].parse()?, args[3].parse()?);
    let (app, token) = (&args[4], &args[5]);
    let key = args
        .get(6)
        .map(|k| AesKey::from_encoding_aes_key(k))
        .transpose()?;
    let timestamp = "1700000000";
    for thread in 0..threads {
        let mut file = std::io::BufWriter::new(std::fs::File::create(format!("{out}.{thread}"))?);
        for i in 0..count / threads {
            let nonce = format!("{}", thread * 1_000_000_000 + i);
            let nonce = nonce.as_str();
            let sig = signature::server_signature(token, timestamp, nonce);
            let xml = format!(
                "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[o_bench_{thread}]]></FromUserName>\
                 <CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>\
                 <Content><![CDATA[benchmark message]]></Content><MsgId>{}</MsgId></xml>",
                thread * 1_000_000_000 + i
            );
            let base = format!(
                "/wechat/{app}?signature={sig}&timestamp={timestamp}&nonce={nonce}&openid=o_bench_{thread}"
            );
            match &key {
                None => writeln!(file, "{base}\t{xml}")?,
                Some(key) => {
                    let encrypt = key.encrypt(app, xml.as_bytes());
                    let msig = signature::msg_signature(token, timestamp, nonce, &encrypt);
                    writeln!(
                        file,
                        "{base}&encrypt_type=aes&msg_signature={msig}\t<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
                    )?;
                }
            }
        }
    }
    Ok(())
}
