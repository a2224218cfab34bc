//! How virtual devices reach a backend: a lean MQTT connection on rumqttc's packet codec
//! ([`mqtt`]), a lean HTTP/1.1 client for firmware downloads and the operator's API calls
//! ([`http`]), and the spreading of source addresses ([`source`]) that lets one harness open
//! more connections to one server port than a single source address has ports.

pub mod http;
pub mod mqtt;
pub mod source;
