//! What a device asks of the LwM2M front, read from one CoAP request: provisioning by claim,
//! the Bootstrap-Request (LwM2M 1.0, section 5.2.7) and the registration interface (section
//! 5.3: Register, Update, De-register). Pure: the front acts on what this returns, and anything else is a reason to
//! refuse, never a panic (the fuzz target `lwm2m_uplink` feeds it arbitrary datagrams).

use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};

use super::block::Block;
use super::packages;

/// The longest lifetime a registration may ask for: a year. Longer ones are refused, as
/// LwM2M allows, rather than kept for ever.
pub const MAX_LIFETIME_S: u32 = 365 * 24 * 3600;
/// The lifetime of a registration that names none (LwM2M's default).
pub const DEFAULT_LIFETIME_S: u32 = 86_400;
/// The most object links a registration keeps; a longer list is refused.
pub const MAX_LINKS: usize = 64;

/// A device's request, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uplink {
    /// `POST /provision?ep=SERIAL&claim=NAME`, the claim's secret and what the device says it
    /// is in a JSON payload: the device asks for an identity.
    Provision {
        /// The device's serial (its endpoint name).
        serial: String,
        /// The claim it provisions through.
        claim: String,
        /// The claim's secret.
        secret: String,
        /// The device's model, if it said.
        model: Option<String>,
        /// Its firmware version, if it said.
        firmware: Option<String>,
    },
    /// `GET /fw/VERSION`, with or without a Block2 option: a block of a campaign's image.
    Package {
        /// The image's version.
        version: String,
        /// The block asked for (none: the first).
        block: Option<Block>,
    },
    /// `POST /bs?ep=...`: the device asks to be told its server and credentials.
    Bootstrap {
        /// Endpoint name: the device's serial.
        endpoint: String,
    },
    /// `POST /rd?ep=...`: a new registration.
    Register {
        /// Endpoint name: the device's serial.
        endpoint: String,
        /// Seconds until the registration expires without an update.
        lifetime_s: u32,
        /// The binding (`U`, `UQ`).
        binding: String,
        /// The object instances it has, as `/3/0`, from the link-format payload.
        links: Vec<String>,
    },
    /// `POST /rd/{location}`: an update of a registration, with what changed.
    Update {
        /// The registration's location.
        location: u64,
        /// A new lifetime, when given.
        lifetime_s: Option<u32>,
        /// A new binding, when given.
        binding: Option<String>,
        /// New object links, when a payload came.
        links: Option<Vec<String>>,
    },
    /// `DELETE /rd/{location}`.
    Deregister {
        /// The registration's location.
        location: u64,
    },
}

/// Why a request was refused: its answer's code and a diagnostic for the device.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// The response code.
    pub code: ResponseType,
    /// Why, as the diagnostic payload (RFC 7252, section 5.5.2).
    pub why: String,
}

impl Refused {
    fn bad(why: impl Into<String>) -> Self {
        Self {
            code: ResponseType::BadRequest,
            why: why.into(),
        }
    }
}

/// The critical options the front understands: Uri-Host, Uri-Port, Uri-Path, Uri-Query and
/// Accept (Content-Format and Observe are elective).
const UNDERSTOOD: [u16; 5] = [3, 7, 11, 15, 17];

/// Block2 (RFC 7959), understood on a package's GET only.
const BLOCK2: u16 = 23;

/// Reads `packet`, a request (the caller has checked its code is a request's).
pub fn read(packet: &Packet) -> Result<Uplink, Refused> {
    // RFC 7252, section 5.4.1: a request with a critical option not understood (an odd
    // number: Block1 among them, and Block2 but on a package) is refused whole.
    let package = packet
        .get_option(CoapOption::UriPath)
        .and_then(|path| path.front())
        .is_some_and(|first| first == packages::PATH.as_bytes());
    if let Some(number) = packet
        .options()
        .map(|(number, _)| *number)
        .find(|number| number % 2 == 1 && !UNDERSTOOD.contains(number) && !(package && *number == BLOCK2))
    {
        return Err(Refused {
            code: ResponseType::BadOption,
            why: format!("option {number} is not understood here"),
        });
    }
    let path = segments(packet, CoapOption::UriPath)?;
    let query = segments(packet, CoapOption::UriQuery)?;
    let method = match packet.header.code {
        MessageClass::Request(method) => method,
        _ => return Err(Refused::bad("not a request")),
    };
    let not_found = || Refused {
        code: ResponseType::NotFound,
        why: "the LwM2M front serves /rd, /bs, /provision and /fw".to_owned(),
    };
    let not_allowed = || Refused {
        code: ResponseType::MethodNotAllowed,
        why: "POST registers or updates, DELETE de-registers".to_owned(),
    };
    match path.as_slice() {
        ["provision"] if method == RequestType::Post => provision(&query, &packet.payload),
        ["provision"] => Err(not_allowed()),
        [packages::PATH, version] if method == RequestType::Get => {
            let block = match packet.get_first_option(CoapOption::Block2) {
                Some(value) => {
                    Some(Block::decode(value).ok_or_else(|| Refused::bad("a Block2 option that does not read"))?)
                }
                None => None,
            };
            Ok(Uplink::Package {
                version: (*version).to_owned(),
                block,
            })
        }
        [packages::PATH, _] => Err(Refused {
            code: ResponseType::MethodNotAllowed,
            why: "GET fetches a package".to_owned(),
        }),
        ["bs"] if method == RequestType::Post => bootstrap(&query),
        ["bs"] => Err(not_allowed()),
        ["rd"] if method == RequestType::Post => register(&query, &packet.payload),
        ["rd"] => Err(not_allowed()),
        ["rd", location] => {
            let location = location.parse::<u64>().map_err(|_| not_found())?;
            match method {
                RequestType::Post => update(location, &query, &packet.payload),
                RequestType::Delete => Ok(Uplink::Deregister { location }),
                _ => Err(not_allowed()),
            }
        }
        _ => Err(not_found()),
    }
}

/// The values of every `option` of `packet`, as UTF-8.
fn segments(packet: &Packet, option: CoapOption) -> Result<Vec<&str>, Refused> {
    let Some(values) = packet.get_option(option) else {
        return Ok(Vec::new());
    };
    values
        .iter()
        .map(|v| std::str::from_utf8(v).map_err(|_| Refused::bad("a URI option is not UTF-8")))
        .collect()
}

/// The query's `key=value` pairs; a key without `=` has an empty value.
fn pairs<'a>(query: &[&'a str]) -> impl Iterator<Item = (&'a str, &'a str)> {
    query.iter().map(|q| q.split_once('=').unwrap_or((q, "")))
}

fn register(query: &[&str], payload: &[u8]) -> Result<Uplink, Refused> {
    let mut endpoint = None;
    let mut lifetime_s = DEFAULT_LIFETIME_S;
    let mut binding = "U".to_owned();
    for (key, value) in pairs(query) {
        match key {
            "ep" => endpoint = Some(value),
            "lt" => lifetime_s = lifetime(value)?,
            "b" => binding = self::binding(value)?,
            "lwm2m" if !matches!(value, "1.0" | "1.1" | "1.2") => {
                return Err(Refused {
                    code: ResponseType::PreconditionFailed,
                    why: format!("LwM2M version {value} is not served; 1.0, 1.1 and 1.2 are"),
                });
            }
            // SMS number, queue mode (1.0's `Q` flag) and what later versions add: known and
            // not needed here.
            _ => {}
        }
    }
    let endpoint = endpoint.ok_or_else(|| Refused::bad("Register needs ep=ENDPOINT"))?;
    if !valid_endpoint(endpoint) {
        return Err(Refused::bad(
            "ep must be the device's serial: 1 to 64 letters, digits, '.', '_' or '-'",
        ));
    }
    Ok(Uplink::Register {
        endpoint: endpoint.to_owned(),
        lifetime_s,
        binding,
        links: links(payload)?,
    })
}

fn bootstrap(query: &[&str]) -> Result<Uplink, Refused> {
    let endpoint = pairs(query)
        .find(|(key, _)| *key == "ep")
        .map(|(_, value)| value)
        .ok_or_else(|| Refused::bad("a Bootstrap-Request needs ep=NAME"))?;
    if !valid_endpoint(endpoint) {
        return Err(Refused::bad(
            "ep must be the device's serial: 1 to 64 letters, digits, '.', '_' or '-'",
        ));
    }
    Ok(Uplink::Bootstrap {
        endpoint: endpoint.to_owned(),
    })
}

fn update(location: u64, query: &[&str], payload: &[u8]) -> Result<Uplink, Refused> {
    let mut lifetime_s = None;
    let mut binding = None;
    for (key, value) in pairs(query) {
        match key {
            "lt" => lifetime_s = Some(lifetime(value)?),
            "b" => binding = Some(self::binding(value)?),
            _ => {}
        }
    }
    let links = if payload.is_empty() {
        None
    } else {
        Some(links(payload)?)
    };
    Ok(Uplink::Update {
        location,
        lifetime_s,
        binding,
        links,
    })
}

fn provision(query: &[&str], payload: &[u8]) -> Result<Uplink, Refused> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        secret: String,
        #[serde(default)]
        model: Option<String>,
        #[serde(default)]
        firmware: Option<String>,
    }
    let (mut serial, mut claim) = (None, None);
    for (key, value) in pairs(query) {
        match key {
            "ep" => serial = Some(value),
            "claim" => claim = Some(value),
            _ => {}
        }
    }
    let (Some(serial), Some(claim)) = (serial, claim) else {
        return Err(Refused::bad("provisioning needs ep=SERIAL and claim=NAME"));
    };
    let body: Body = serde_json::from_slice(payload).map_err(|_| {
        Refused::bad("the payload must be JSON like {\"secret\": \"...\", \"model\": \"m\", \"firmware\": \"1.0\"}")
    })?;
    Ok(Uplink::Provision {
        serial: serial.to_owned(),
        claim: claim.to_owned(),
        secret: body.secret,
        model: body.model,
        firmware: body.firmware,
    })
}

fn lifetime(value: &str) -> Result<u32, Refused> {
    match value.parse::<u32>() {
        Ok(s) if (1..=MAX_LIFETIME_S).contains(&s) => Ok(s),
        _ => Err(Refused::bad(format!(
            "lt must be 1 to {MAX_LIFETIME_S} seconds, found \"{value}\""
        ))),
    }
}

fn binding(value: &str) -> Result<String, Refused> {
    match value {
        "U" | "UQ" | "S" | "SQ" | "US" | "UQS" | "T" | "TQ" | "N" | "NQ" | "Q" => Ok(value.to_owned()),
        _ => Err(Refused::bad(format!(
            "b must be a binding such as U or UQ, found \"{value}\""
        ))),
    }
}

/// An endpoint name the registry can hold as a serial.
fn valid_endpoint(name: &str) -> bool {
    crate::registry::valid_serial(name)
}

/// The object instances (`/3/0`) and objects (`/5`) of a link-format payload
/// (`</1/0>,</3/0>;ver=1.1`); attributes and a root path (`</>;rt="oma.lwm2m"`) are skipped.
fn links(payload: &[u8]) -> Result<Vec<String>, Refused> {
    let text = std::str::from_utf8(payload).map_err(|_| Refused::bad("the object links are not UTF-8"))?;
    let mut links = Vec::new();
    for link in text.split(',').map(str::trim).filter(|l| !l.is_empty()) {
        let target = link
            .split(';')
            .next()
            .and_then(|t| t.strip_prefix('<'))
            .and_then(|t| t.strip_suffix('>'))
            .ok_or_else(|| Refused::bad(format!("\"{link}\" is not a link like </3/0>")))?;
        let ids: Vec<&str> = target.split('/').skip(1).filter(|s| !s.is_empty()).collect();
        if ids.is_empty() {
            continue;
        }
        if ids.len() > 2 || ids.iter().any(|id| id.parse::<u16>().is_err()) {
            return Err(Refused::bad(format!(
                "\"{target}\" is not an object or object instance like /3/0"
            )));
        }
        if links.len() == MAX_LINKS {
            return Err(Refused::bad(format!("more than {MAX_LINKS} object links")));
        }
        links.push(format!("/{}", ids.join("/")));
    }
    Ok(links)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coap_lite::MessageType;

    fn request(method: RequestType, path: &[&str], query: &[&str], payload: &[u8]) -> Packet {
        let mut packet = Packet::new();
        packet.header.set_type(MessageType::Confirmable);
        packet.header.code = MessageClass::Request(method);
        for segment in path {
            packet.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
        }
        for q in query {
            packet.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
        }
        packet.payload = payload.to_vec();
        packet
    }

    #[test]
    fn a_register_gives_its_endpoint_lifetime_binding_and_objects() {
        let packet = request(
            RequestType::Post,
            &["rd"],
            &["ep=sn-1", "lt=300", "lwm2m=1.1", "b=UQ"],
            b"</>;rt=\"oma.lwm2m\",</1/0>,</3/0>;ver=1.1, </3303/0>,</5>",
        );
        assert_eq!(
            read(&packet),
            Ok(Uplink::Register {
                endpoint: "sn-1".into(),
                lifetime_s: 300,
                binding: "UQ".into(),
                links: vec!["/1/0".into(), "/3/0".into(), "/3303/0".into(), "/5".into()],
            })
        );
    }

    #[test]
    fn a_register_without_lifetime_takes_a_day() {
        let packet = request(RequestType::Post, &["rd"], &["ep=sn-1"], b"");
        let Ok(Uplink::Register {
            lifetime_s, binding, ..
        }) = read(&packet)
        else {
            panic!("a register");
        };
        assert_eq!((lifetime_s, binding.as_str()), (DEFAULT_LIFETIME_S, "U"));
    }

    #[test]
    fn bad_registers_are_refused_with_why() {
        let cases: &[(&[&str], &[u8], ResponseType, &str)] = &[
            (&["lt=300"], b"", ResponseType::BadRequest, "ep="),
            (&["ep=a b"], b"", ResponseType::BadRequest, "ep must"),
            (&["ep=x", "lt=0"], b"", ResponseType::BadRequest, "lt must"),
            (&["ep=x", "lt=99999999999"], b"", ResponseType::BadRequest, "lt must"),
            (&["ep=x", "b=Z"], b"", ResponseType::BadRequest, "b must"),
            (&["ep=x", "lwm2m=2.0"], b"", ResponseType::PreconditionFailed, "2.0"),
            (&["ep=x"], b"</3/0", ResponseType::BadRequest, "not a link"),
            (&["ep=x"], b"</3/a>", ResponseType::BadRequest, "not an object"),
            (&["ep=x"], b"</3/0/1/2>", ResponseType::BadRequest, "not an object"),
            (&["ep=x"], &[0xff, 0xfe], ResponseType::BadRequest, "UTF-8"),
        ];
        for (query, payload, code, why) in cases {
            let refused = read(&request(RequestType::Post, &["rd"], query, payload)).unwrap_err();
            assert_eq!(refused.code, *code, "{query:?}");
            assert!(refused.why.contains(why), "{query:?}: {}", refused.why);
        }
        let many: Vec<String> = (0..=MAX_LINKS).map(|i| format!("</{i}/0>")).collect();
        let refused = read(&request(
            RequestType::Post,
            &["rd"],
            &["ep=x"],
            many.join(",").as_bytes(),
        ))
        .unwrap_err();
        assert!(refused.why.contains("more than"));
    }

    #[test]
    fn updates_and_deregisters_name_their_location() {
        let update = request(RequestType::Post, &["rd", "7"], &["lt=60"], b"");
        assert_eq!(
            read(&update),
            Ok(Uplink::Update {
                location: 7,
                lifetime_s: Some(60),
                binding: None,
                links: None,
            })
        );
        let delete = request(RequestType::Delete, &["rd", "7"], &[], b"");
        assert_eq!(read(&delete), Ok(Uplink::Deregister { location: 7 }));
        let unknown = request(RequestType::Post, &["rd", "x"], &[], b"");
        assert_eq!(read(&unknown).unwrap_err().code, ResponseType::NotFound);
        let get = request(RequestType::Get, &["rd", "7"], &[], b"");
        assert_eq!(read(&get).unwrap_err().code, ResponseType::MethodNotAllowed);
        let elsewhere = request(RequestType::Post, &["dp"], &["ep=x"], b"");
        assert_eq!(read(&elsewhere).unwrap_err().code, ResponseType::NotFound);
        let mut blockwise = request(RequestType::Post, &["rd"], &["ep=x"], b"</3/0>");
        blockwise.add_option(CoapOption::Block1, vec![0x0E]);
        let refused = read(&blockwise).unwrap_err();
        assert_eq!(refused.code, ResponseType::BadOption);
        assert!(refused.why.contains("27"), "{}", refused.why);
        let mut port = request(RequestType::Post, &["rd"], &["ep=x"], b"");
        port.add_option(CoapOption::UriPort, vec![0x16, 0x33]);
        assert!(read(&port).is_ok(), "Uri-Port is understood");
    }

    #[test]
    fn a_package_is_asked_for_by_version_and_block() {
        let first = request(RequestType::Get, &["fw", "2.0.0"], &[], b"");
        assert_eq!(
            read(&first),
            Ok(Uplink::Package {
                version: "2.0.0".to_owned(),
                block: None
            })
        );
        let mut third = request(RequestType::Get, &["fw", "2.0.0"], &[], b"");
        third.add_option(CoapOption::Block2, vec![0x26]);
        assert_eq!(
            read(&third),
            Ok(Uplink::Package {
                version: "2.0.0".to_owned(),
                block: Some(Block {
                    num: 2,
                    more: false,
                    szx: 6
                })
            })
        );
        let mut reserved = request(RequestType::Get, &["fw", "2.0.0"], &[], b"");
        reserved.add_option(CoapOption::Block2, vec![0x07]);
        assert_eq!(read(&reserved).unwrap_err().code, ResponseType::BadRequest);
        let put = request(RequestType::Put, &["fw", "2.0.0"], &[], b"x");
        assert_eq!(read(&put).unwrap_err().code, ResponseType::MethodNotAllowed);
        let mut elsewhere = request(RequestType::Post, &["rd"], &["ep=x"], b"</3/0>");
        elsewhere.add_option(CoapOption::Block2, vec![0x06]);
        assert_eq!(
            read(&elsewhere).unwrap_err().code,
            ResponseType::BadOption,
            "Block2 only on a package"
        );
    }

    #[test]
    fn a_bootstrap_request_names_its_endpoint() {
        let asked = request(RequestType::Post, &["bs"], &["ep=SN-7"], b"");
        assert_eq!(
            read(&asked),
            Ok(Uplink::Bootstrap {
                endpoint: "SN-7".to_owned()
            })
        );
        for (method, query) in [
            (RequestType::Post, &[][..]),
            (RequestType::Post, &["ep=a/b"][..]),
            (RequestType::Get, &["ep=SN-7"][..]),
        ] {
            let refused = read(&request(method, &["bs"], query, b"")).expect_err("refused");
            assert!(
                matches!(refused.code, ResponseType::BadRequest | ResponseType::MethodNotAllowed),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn provisioning_carries_the_claim_and_its_secret() {
        let packet = request(
            RequestType::Post,
            &["provision"],
            &["ep=sn-1", "claim=fleetsim-meters"],
            br#"{"secret":"s3","model":"meter","firmware":"1.0"}"#,
        );
        assert_eq!(
            read(&packet),
            Ok(Uplink::Provision {
                serial: "sn-1".into(),
                claim: "fleetsim-meters".into(),
                secret: "s3".into(),
                model: Some("meter".into()),
                firmware: Some("1.0".into()),
            })
        );
        let no_claim = request(RequestType::Post, &["provision"], &["ep=sn-1"], br#"{"secret":"s"}"#);
        assert!(read(&no_claim).unwrap_err().why.contains("claim=NAME"));
        let bad_body = request(RequestType::Post, &["provision"], &["ep=sn-1", "claim=c"], b"{}");
        assert!(read(&bad_body).unwrap_err().why.contains("JSON"));
    }
}
