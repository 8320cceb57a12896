//! Golden wire fixtures shared by the integration tests (and written out as cargo-fuzz seeds by
//! `tests/fuzz_corpus.rs`). One comment per field; the Bolt v2 CRCs are those of
//! `java.util.zip.CRC32` over the bytes above them.
#![allow(dead_code)]

/// Concatenates fixture parts.
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Bolt v1 request: class, two header entries, content.
pub fn bolt_v1_request() -> Vec<u8> {
    cat(&[
        &[0x01],                                         // proto: Bolt v1
        &[0x01],                                         // type: request
        &[0x00, 0x01],                                   // cmdcode: RPC request
        &[0x01],                                         // ver2
        &[0x00, 0x00, 0x00, 0x07],                       // request id 7
        &[0x01],                                         // codec: hessian2
        &[0x00, 0x00, 0x0b, 0xb8],                       // timeout: 3000 ms
        &[0x00, 0x2c],                                   // class length 44
        &[0x00, 0x50],                                   // header length 80
        &[0x00, 0x00, 0x00, 0x06],                       // content length 6
        b"com.alipay.sofa.rpc.core.request.SofaRequest", // class
        &[0x00, 0x00, 0x00, 0x07],                       // header: key length 7
        b"service",                                      // header: key
        &[0x00, 0x00, 0x00, 0x1c],                       // header: value length 28
        b"com.example.HelloService:1.0",                 // header: value
        &[0x00, 0x00, 0x00, 0x15],                       // header: key length 21
        b"sofa_head_method_name",                        // header: key
        &[0x00, 0x00, 0x00, 0x08],                       // header: value length 8
        b"sayHello",                                     // header: value
        &[0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f],           // content: hessian2 string "hello"
    ])
}

/// Bolt v1 oneway request: no class, no header.
pub fn bolt_v1_oneway() -> Vec<u8> {
    cat(&[
        &[0x01],                         // proto: Bolt v1
        &[0x02],                         // type: oneway
        &[0x00, 0x01],                   // cmdcode: RPC request
        &[0x01],                         // ver2
        &[0x00, 0x00, 0x00, 0x08],       // request id 8
        &[0x01],                         // codec: hessian2
        &[0x00, 0x00, 0x03, 0xe8],       // timeout: 1000 ms
        &[0x00, 0x00],                   // class length 0
        &[0x00, 0x00],                   // header length 0
        &[0x00, 0x00, 0x00, 0x05],       // content length 5
        &[0x04, 0x70, 0x69, 0x6e, 0x67], // content
    ])
}

/// Bolt v1 response: status SUCCESS, class, one header entry with an empty value, content.
pub fn bolt_v1_response() -> Vec<u8> {
    cat(&[
        &[0x01],                                           // proto: Bolt v1
        &[0x00],                                           // type: response
        &[0x00, 0x02],                                     // cmdcode: RPC response
        &[0x01],                                           // ver2
        &[0x00, 0x00, 0x00, 0x07],                         // request id 7
        &[0x01],                                           // codec: hessian2
        &[0x00, 0x00],                                     // status: SUCCESS
        &[0x00, 0x2e],                                     // class length 46
        &[0x00, 0x20],                                     // header length 32
        &[0x00, 0x00, 0x00, 0x0c],                         // content length 12
        b"com.alipay.sofa.rpc.core.response.SofaResponse", // class
        &[0x00, 0x00, 0x00, 0x18],                         // header: key length 24
        b"sofa_head_response_error",                       // header: key
        &[0x00, 0x00, 0x00, 0x00],                         // header: value length 0
        &[],                                               // header: value
        &[
            0x0b, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x20, 0x77, 0x6f, 0x72, 0x6c, 0x64,
        ], // content
    ])
}

/// Bolt v1 heartbeat request (= `Frame::heartbeat(1, 9)`).
pub fn bolt_v1_heartbeat() -> Vec<u8> {
    cat(&[
        &[0x01],                   // proto: Bolt v1
        &[0x01],                   // type: request
        &[0x00, 0x00],             // cmdcode: heartbeat
        &[0x01],                   // ver2
        &[0x00, 0x00, 0x00, 0x09], // request id 9
        &[0x01],                   // codec: hessian2
        &[0xff, 0xff, 0xff, 0xff], // timeout: -1
        &[0x00, 0x00],             // class length 0
        &[0x00, 0x00],             // header length 0
        &[0x00, 0x00, 0x00, 0x00], // content length 0
    ])
}

/// Bolt v1 heartbeat ack (= `Frame::response_to(&heartbeat, 0)`).
pub fn bolt_v1_heartbeat_ack() -> Vec<u8> {
    cat(&[
        &[0x01],                   // proto: Bolt v1
        &[0x00],                   // type: response
        &[0x00, 0x00],             // cmdcode: heartbeat
        &[0x01],                   // ver2
        &[0x00, 0x00, 0x00, 0x09], // request id 9
        &[0x01],                   // codec: hessian2
        &[0x00, 0x00],             // status: SUCCESS
        &[0x00, 0x00],             // class length 0
        &[0x00, 0x00],             // header length 0
        &[0x00, 0x00, 0x00, 0x00], // content length 0
    ])
}

/// Bolt v1 GoAway (= `Frame::goaway(1, 0)`).
pub fn bolt_v1_goaway() -> Vec<u8> {
    cat(&[
        &[0x01],                   // proto: Bolt v1
        &[0x01],                   // type: request
        &[0x00, 0x64],             // cmdcode: GoAway
        &[0x01],                   // ver2
        &[0x00, 0x00, 0x00, 0x00], // request id 0
        &[0x01],                   // codec: hessian2
        &[0x00, 0x00, 0x00, 0x00], // timeout: 0
        &[0x00, 0x00],             // class length 0
        &[0x00, 0x00],             // header length 0
        &[0x00, 0x00, 0x00, 0x00], // content length 0
    ])
}

/// Bolt v1 local error reply (= `Frame::response_to(&request, NO_PROCESSOR)`).
pub fn bolt_v1_hijack() -> Vec<u8> {
    cat(&[
        &[0x01],                   // proto: Bolt v1
        &[0x00],                   // type: response
        &[0x00, 0x02],             // cmdcode: RPC response
        &[0x01],                   // ver2
        &[0x00, 0x00, 0x00, 0x07], // request id 7
        &[0x01],                   // codec: hessian2
        &[0x00, 0x06],             // status: NO_PROCESSOR
        &[0x00, 0x00],             // class length 0
        &[0x00, 0x00],             // header length 0
        &[0x00, 0x00, 0x00, 0x00], // content length 0
    ])
}

/// Bolt v2 request without CRC (ver1 1, switch 0).
pub fn bolt_v2_request() -> Vec<u8> {
    cat(&[
        &[0x02],                                         // proto: Bolt v2
        &[0x01],                                         // ver1: 1 (no CRC)
        &[0x01],                                         // type: request
        &[0x00, 0x01],                                   // cmdcode: RPC request
        &[0x01],                                         // ver2
        &[0x01, 0x02, 0x03, 0x04],                       // request id 0x01020304
        &[0x01],                                         // codec: hessian2
        &[0x00],                                         // switch: 0
        &[0x00, 0x00, 0x13, 0x88],                       // timeout: 5000 ms
        &[0x00, 0x2c],                                   // class length 44
        &[0x00, 0x2b],                                   // header length 43
        &[0x00, 0x00, 0x00, 0x06],                       // content length 6
        b"com.alipay.sofa.rpc.core.request.SofaRequest", // class
        &[0x00, 0x00, 0x00, 0x07],                       // header: key length 7
        b"service",                                      // header: key
        &[0x00, 0x00, 0x00, 0x1c],                       // header: value length 28
        b"com.example.HelloService:1.0",                 // header: value
        &[0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f],           // content
    ])
}

/// Bolt v2 request with CRC32 trailer (ver1 2, switch 1).
pub fn bolt_v2_request_crc() -> Vec<u8> {
    cat(&[
        &[0x02],                                         // proto: Bolt v2
        &[0x02],                                         // ver1: 2 (CRC capable)
        &[0x01],                                         // type: request
        &[0x00, 0x01],                                   // cmdcode: RPC request
        &[0x01],                                         // ver2
        &[0x01, 0x02, 0x03, 0x04],                       // request id 0x01020304
        &[0x01],                                         // codec: hessian2
        &[0x01],                                         // switch: bit 0 = CRC on
        &[0x00, 0x00, 0x13, 0x88],                       // timeout: 5000 ms
        &[0x00, 0x2c],                                   // class length 44
        &[0x00, 0x2b],                                   // header length 43
        &[0x00, 0x00, 0x00, 0x06],                       // content length 6
        b"com.alipay.sofa.rpc.core.request.SofaRequest", // class
        &[0x00, 0x00, 0x00, 0x07],                       // header: key length 7
        b"service",                                      // header: key
        &[0x00, 0x00, 0x00, 0x1c],                       // header: value length 28
        b"com.example.HelloService:1.0",                 // header: value
        &[0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f],           // content
        &[0x5a, 0x16, 0xc0, 0x4c],                       // CRC32 (IEEE) of all the bytes above
    ])
}

/// Bolt v2 response with CRC32 trailer, status SERVER_EXCEPTION.
pub fn bolt_v2_response_crc() -> Vec<u8> {
    cat(&[
        &[0x02],                                           // proto: Bolt v2
        &[0x02],                                           // ver1: 2 (CRC capable)
        &[0x00],                                           // type: response
        &[0x00, 0x02],                                     // cmdcode: RPC response
        &[0x01],                                           // ver2
        &[0x01, 0x02, 0x03, 0x04],                         // request id 0x01020304
        &[0x01],                                           // codec: hessian2
        &[0x01],                                           // switch: bit 0 = CRC on
        &[0x00, 0x02],                                     // status: SERVER_EXCEPTION
        &[0x00, 0x2e],                                     // class length 46
        &[0x00, 0x00],                                     // header length 0
        &[0x00, 0x00, 0x00, 0x0c],                         // content length 12
        b"com.alipay.sofa.rpc.core.response.SofaResponse", // class
        &[
            0x0b, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x20, 0x77, 0x6f, 0x72, 0x6c, 0x64,
        ], // content
        &[0xd6, 0x5a, 0x0a, 0x52],                         // CRC32 (IEEE) of all the bytes above
    ])
}

/// Bolt v2 response without CRC.
pub fn bolt_v2_response() -> Vec<u8> {
    cat(&[
        &[0x02],                   // proto: Bolt v2
        &[0x01],                   // ver1: 1
        &[0x00],                   // type: response
        &[0x00, 0x02],             // cmdcode: RPC response
        &[0x01],                   // ver2
        &[0x01, 0x02, 0x03, 0x04], // request id 0x01020304
        &[0x01],                   // codec: hessian2
        &[0x00],                   // switch: 0
        &[0x00, 0x00],             // status: SUCCESS
        &[0x00, 0x00],             // class length 0
        &[0x00, 0x00],             // header length 0
        &[0x00, 0x00, 0x00, 0x0c], // content length 12
        &[
            0x0b, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x20, 0x77, 0x6f, 0x72, 0x6c, 0x64,
        ], // content
    ])
}

/// Bolt v2 heartbeat (= `Frame::heartbeat(2, 10)`).
pub fn bolt_v2_heartbeat() -> Vec<u8> {
    cat(&[
        &[0x02],                   // proto: Bolt v2
        &[0x01],                   // ver1: 1
        &[0x01],                   // type: request
        &[0x00, 0x00],             // cmdcode: heartbeat
        &[0x01],                   // ver2
        &[0x00, 0x00, 0x00, 0x0a], // request id 10
        &[0x01],                   // codec: hessian2
        &[0x00],                   // switch: 0
        &[0xff, 0xff, 0xff, 0xff], // timeout: -1
        &[0x00, 0x00],             // class length 0
        &[0x00, 0x00],             // header length 0
        &[0x00, 0x00, 0x00, 0x00], // content length 0
    ])
}

/// Dubbo two-way request with a hessian2 invocation and attachments.
pub fn dubbo_request() -> Vec<u8> {
    cat(&[
        &[0xda, 0xbb],                                     // magic
        &[0xc2],                                           // flag: request | two-way | hessian2
        &[0x00],                                           // status: 0 (unused in requests)
        &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01], // request id 1
        &[0x00, 0x00, 0x00, 0xa2],                         // body length 162
        &[0x05],                                           // compact string of 5 units
        b"2.0.2",                                          // dubbo version
        &[0x17],                                           // compact string of 23 units
        b"com.example.DemoService",                        // service path
        &[0x05],                                           // compact string of 5 units
        b"1.0.0",                                          // service version
        &[0x08],                                           // compact string of 8 units
        b"sayHello",                                       // method
        &[0x12],                                           // compact string of 18 units
        b"Ljava/lang/String;",                             // parameter descriptor: 1 argument
        &[0x05],                                           // compact string of 5 units
        b"world",                                          // argument 0: String
        &[0x48],                                           // attachments: untyped map 'H'
        &[0x04],                                           // compact string of 4 units
        b"path",                                           // key
        &[0x17],                                           // compact string of 23 units
        b"com.example.DemoService",                        // value
        &[0x09],                                           // compact string of 9 units
        b"interface",                                      // key
        &[0x17],                                           // compact string of 23 units
        b"com.example.DemoService",                        // value
        &[0x07],                                           // compact string of 7 units
        b"version",                                        // key
        &[0x05],                                           // compact string of 5 units
        b"1.0.0",                                          // value
        &[0x07],                                           // compact string of 7 units
        b"timeout",                                        // key
        &[0x04],                                           // compact string of 4 units
        b"3000",                                           // value
        &[0x5a],                                           // end of map 'Z'
    ])
}

/// Dubbo request whose arguments hold a class definition + object, a list and a nested map (exercises `skip_value`), and a non-string attachment.
pub fn dubbo_request_complex() -> Vec<u8> {
    cat(&[
        &[0xda, 0xbb],                                           // magic
        &[0xc2], // flag: request | two-way | hessian2
        &[0x00], // status: 0
        &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02], // request id 2
        &[0x00, 0x00, 0x01, 0x49], // body length 329
        &[0x05], // compact string of 5 units
        b"2.0.2", // dubbo version
        &[0x17], // compact string of 23 units
        b"com.example.UserService", // service path
        &[0x03], // compact string of 3 units
        &[0x32, 0x2e, 0x30], // service version
        &[0x04], // compact string of 4 units
        b"save", // method
        &[0x30, 0x31], // string of 49 units (0x30-0x33 form)
        b"Lcom/example/User;Ljava/util/List;Ljava/util/Map;", // parameter descriptor, 3 arguments
        &[0x43], // argument 0: class definition 'C'
        &[0x10], // compact string of 16 units
        b"com.example.User", // class name
        &[0x92], // field count 2
        &[0x04], // compact string of 4 units
        b"name", // field 0
        &[0x03], // compact string of 3 units
        &[0x61, 0x67, 0x65], // field 1
        &[0x60], // object of class definition 0
        &[0x05], // compact string of 5 units
        b"alice", // name
        &[0xae], // age: int 30
        &[0x7a], // argument 1: fixed untyped list of 2
        &[0x91], // int 1
        &[0xda], // long 2 (compact)
        &[0x48], // argument 2: untyped map
        &[0x05], // compact string of 5 units
        b"inner", // key
        &[0x4d], // typed map 'M'
        &[0x11], // compact string of 17 units
        b"java.util.TreeMap", // type
        &[0x01], // compact string of 1 units
        &[0x6e], // key
        &[0x90], // int 0
        &[0x5a], // end of typed map
        &[0x04], // compact string of 4 units
        b"tags", // key
        &[0x72], // fixed typed list of 2
        &[0x07], // compact string of 7 units
        b"[string", // type
        &[0x01], // compact string of 1 units
        &[0x61], // element
        &[0x01], // compact string of 1 units
        &[0x62], // element
        &[0x04], // compact string of 4 units
        b"when", // key
        &[0x4a, 0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00], // date in ms 'J'
        &[0x05], // compact string of 5 units
        b"ratio", // key
        &[0x5f, 0x00, 0x00, 0x05, 0xdc], // double as float 1.5 (0x5f, milli-units)
        &[0x04], // compact string of 4 units
        b"blob", // key
        &[0x23, 0x01, 0x02, 0x03], // binary of 3 bytes (compact)
        &[0x04], // compact string of 4 units
        b"user", // key
        &[0x51, 0x90], // ref to object 0 'Q'
        &[0x03], // compact string of 3 units
        &[0x62, 0x69, 0x67], // key
        &[0x4c, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00], // long 'L'
        &[0x04], // compact string of 4 units
        b"half", // key
        &[0x5d, 0x02], // double as byte 2.0 (0x5d)
        &[0x04], // compact string of 4 units
        b"flag", // key
        &[0x54], // true
        &[0x5a], // end of map
        &[0x48], // attachments: untyped map 'H'
        &[0x04], // compact string of 4 units
        b"path", // key
        &[0x17], // compact string of 23 units
        b"com.example.UserService", // value
        &[0x09], // compact string of 9 units
        b"interface", // key
        &[0x17], // compact string of 23 units
        b"com.example.UserService", // value
        &[0x05], // compact string of 5 units
        b"count", // key: non-string value, skipped
        &[0x91], // int 1
        &[0x07], // compact string of 7 units
        b"version", // key
        &[0x03], // compact string of 3 units
        &[0x32, 0x2e, 0x30], // value
        &[0x5a], // end of map 'Z'
    ])
}

/// Dubbo one-way request (no two-way bit), null service version, empty attachments.
pub fn dubbo_oneway() -> Vec<u8> {
    cat(&[
        &[0xda, 0xbb],                                     // magic
        &[0x82],                                           // flag: request | hessian2
        &[0x00],                                           // status: 0
        &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03], // request id 3
        &[0x00, 0x00, 0x00, 0x3c],                         // body length 60
        &[0x05],                                           // compact string of 5 units
        b"2.0.2",                                          // dubbo version
        &[0x16],                                           // compact string of 22 units
        b"com.example.LogService",                         // service path
        &[0x4e],                                           // service version: null
        &[0x03],                                           // compact string of 3 units
        &[0x6c, 0x6f, 0x67],                               // method
        &[0x13],                                           // compact string of 19 units
        b"Ljava/lang/String;I",                            // parameter descriptor: 2 arguments
        &[0x02],                                           // compact string of 2 units
        &[0x68, 0x69],                                     // argument 0: String
        &[0x95],                                           // argument 1: int 5
        &[0x48],                                           // attachments: untyped map
        &[0x5a],                                           // end of map
    ])
}

/// Dubbo OK response with a value.
pub fn dubbo_response() -> Vec<u8> {
    cat(&[
        &[0xda, 0xbb],                                     // magic
        &[0x02],                                           // flag: response | hessian2
        &[0x14],                                           // status: OK
        &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01], // request id 1
        &[0x00, 0x00, 0x00, 0x0d],                         // body length 13
        &[0x91],                                           // response type: RESPONSE_VALUE (int 1)
        &[0x0b],                                           // compact string of 11 units
        b"hello world",                                    // value
    ])
}

/// Dubbo heartbeat (event) request.
pub fn dubbo_heartbeat() -> Vec<u8> {
    cat(&[
        &[0xda, 0xbb],                                     // magic
        &[0xe2], // flag: request | two-way | event | hessian2
        &[0x00], // status: 0
        &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04], // request id 4
        &[0x00, 0x00, 0x00, 0x01], // body length 1
        &[0x4e], // body: null
    ])
}

/// Dubbo heartbeat reply (= `Frame::heartbeat_reply`).
pub fn dubbo_heartbeat_reply() -> Vec<u8> {
    cat(&[
        &[0xda, 0xbb],                                     // magic
        &[0x22],                                           // flag: response | event | hessian2
        &[0x14],                                           // status: OK
        &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04], // request id 4
        &[0x00, 0x00, 0x00, 0x01],                         // body length 1
        &[0x4e],                                           // body: null
    ])
}

/// Dubbo error response (= `Frame::error_response(&req, SERVICE_NOT_FOUND, "404|router unavailable")`).
pub fn dubbo_error_response() -> Vec<u8> {
    cat(&[
        &[0xda, 0xbb],                                     // magic
        &[0x02],                                           // flag: response | hessian2
        &[0x3c],                                           // status: SERVICE_NOT_FOUND
        &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01], // request id 1
        &[0x00, 0x00, 0x00, 0x17],                         // body length 23
        &[0x16],                                           // compact string of 22 units
        b"404|router unavailable",                         // body: hessian2
    ])
}

/// Every Bolt fixture, by name.
pub fn bolt_all() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("bolt_v1_request", bolt_v1_request()),
        ("bolt_v1_oneway", bolt_v1_oneway()),
        ("bolt_v1_response", bolt_v1_response()),
        ("bolt_v1_heartbeat", bolt_v1_heartbeat()),
        ("bolt_v1_heartbeat_ack", bolt_v1_heartbeat_ack()),
        ("bolt_v1_goaway", bolt_v1_goaway()),
        ("bolt_v1_hijack", bolt_v1_hijack()),
        ("bolt_v2_request", bolt_v2_request()),
        ("bolt_v2_request_crc", bolt_v2_request_crc()),
        ("bolt_v2_response_crc", bolt_v2_response_crc()),
        ("bolt_v2_response", bolt_v2_response()),
        ("bolt_v2_heartbeat", bolt_v2_heartbeat()),
    ]
}

/// Every Dubbo fixture, by name.
pub fn dubbo_all() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("dubbo_request", dubbo_request()),
        ("dubbo_request_complex", dubbo_request_complex()),
        ("dubbo_oneway", dubbo_oneway()),
        ("dubbo_response", dubbo_response()),
        ("dubbo_heartbeat", dubbo_heartbeat()),
        ("dubbo_heartbeat_reply", dubbo_heartbeat_reply()),
        ("dubbo_error_response", dubbo_error_response()),
    ]
}

/// A string of 40000 UTF-16 units with a pair at the chunk edge: `R` chunk + `S` chunk.
pub fn hessian2_chunked_string() -> Vec<u8> {
    let s = format!("{}\u{1F600}{}", "x".repeat(32767), "é".repeat(7231));
    let mut b = bytes::BytesMut::new();
    mosn_wire::hessian2::write_string(&mut b, &s);
    b.to_vec()
}

/// Hessian2 seeds: every Dubbo body, plus standalone values.
pub fn hessian2_all() -> Vec<(&'static str, Vec<u8>)> {
    let mut v: Vec<(&'static str, Vec<u8>)> = dubbo_all()
        .into_iter()
        .map(|(name, bytes)| (name, bytes[16..].to_vec()))
        .collect();
    v.push(("hessian2_chunked_string", hessian2_chunked_string()));
    v.push((
        "hessian2_string_map",
        cat(&[
            &[0x48],                         // untyped map 'H'
            &[0x01, b'k'],                   // key "k"
            &[0x02, 0xce, 0xbb, 0xce, 0xbb], // value "λλ" (2-byte UTF-8)
            &[0x01, b'n'],                   // key "n"
            &[0x4e],                         // value null (skipped)
            &[0x5a],                         // end 'Z'
        ]),
    ));
    v.push((
        "hessian2_binary_chunks",
        cat(&[
            &[0x41, 0x00, 0x02, 0xaa, 0xbb], // non-final binary chunk 'A' of 2 bytes
            &[0x42, 0x00, 0x01, 0xcc],       // final binary chunk 'B' of 1 byte
            &[0x57],                         // variable untyped list 'W'
            &[0x55, 0x04],                   // variable typed list 'U', type "list"
            b"list",                         // type name
            &[0x5a],                         // end of 'U'
            &[0x5a],                         // end of 'W'
        ]),
    ));
    v
}
