// The Apache RocketMQ Java client as a peer of the daemon (tests/java_interop.rs).
// One Java 17 source file, run directly:
//
//   java -cp '<lib-client>/*' tests/java/Peer.java produce --namesrv 127.0.0.1:9876 --topic T
//        [--tag TagA] [--keys 'k1 k2'] [--prop name=value]... [--sizes 32,8192]
//        [--ak AK --sk SK] [--namespace NS] [--group G] [--deadline 60]
//   java -cp '<lib-client>/*' tests/java/Peer.java consume --namesrv … --topic T --group G
//        [--tags 'TagA || TagB' | --sql "color = 'blue'"] [--expect N] [--linger 3]
//        [--fail-once-prop NAME] [--ak AK --sk SK] [--namespace NS] [--deadline 60]
//
// (scripts/java-peer.sh fetches the jars and prints the classpath.)
//
// produce: one message per entry of --sizes (default 32) with tag, keys, the --prop user
// properties and `idx=<i>`; the body of message i is "java-<i>-" followed by a byte pattern,
// cut to the size (the producer zlib-compresses bodies from 4 KiB on). One JSON line per
// SendResult: {"event":"sent","idx":…,"msgId":…,"offsetMsgId":…,"status":…,"body":<base64>}.
//
// consume: a push consumer (clustering, from the first offset) with a tag expression or an
// SQL92 selector. One JSON line per delivery: msgId, offsetMsgId, topic, tags, keys, user
// properties, reconsumeTimes, sysFlag, body (base64) and the status returned. A message with
// the property --fail-once-prop gets RECONSUME_LATER on its first delivery (reconsumeTimes 0).
// It stops --linger seconds after --expect distinct messages were consumed successfully (0:
// run until the deadline), printing {"event":"done",…}; exit 3 if the deadline came first.
//
// namespace: ClientConfig.setNamespace (the client wraps topics and groups as `NS%name`), which
// is what the daemon does with `instanceId`; setNamespaceV2 only adds `ns`/`nsd` request fields
// for a proxy and leaves the names alone. ACL: AclClientRPCHook(SessionCredentials(ak, sk)).
// Talks to 127.0.0.1 name servers only.

import java.nio.charset.StandardCharsets;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;

import org.apache.rocketmq.acl.common.AclClientRPCHook;
import org.apache.rocketmq.acl.common.SessionCredentials;
import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.MessageSelector;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerConcurrently;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageClientExt;
import org.apache.rocketmq.common.message.MessageConst;
import org.apache.rocketmq.common.message.MessageExt;
import org.apache.rocketmq.remoting.RPCHook;

public class Peer {
    static final PrintStream OUT = new PrintStream(System.out, true, StandardCharsets.UTF_8);

    public static void main(String[] argv) throws Exception {
        if (argv.length == 0) {
            System.err.println("usage: Peer produce|consume --namesrv ADDR --topic T ...");
            System.exit(2);
        }
        Map<String, List<String>> a = parse(argv);
        String ns = one(a, "namesrv", null);
        if (ns == null || !ns.startsWith("127.0.0.1:")) {
            fail("--namesrv must be a 127.0.0.1 address, got " + ns);
        }
        int deadline = Integer.parseInt(one(a, "deadline", "60"));
        // Whatever happens, the process ends by the deadline.
        Thread killer = new Thread(() -> {
            try {
                Thread.sleep(deadline * 1000L);
            } catch (InterruptedException e) {
                return;
            }
            emit("{\"event\":\"deadline\",\"seconds\":" + deadline + "}");
            Runtime.getRuntime().halt(3);
        });
        killer.setDaemon(true);
        killer.start();
        try {
            switch (argv[0]) {
                case "produce" -> produce(a, ns);
                case "consume" -> consume(a, ns);
                default -> fail("unknown command " + argv[0]);
            }
        } catch (Throwable t) {
            t.printStackTrace();
            fail(t.toString());
        }
        Runtime.getRuntime().halt(0);
    }

    static void produce(Map<String, List<String>> a, String ns) throws Exception {
        DefaultMQProducer p = new DefaultMQProducer(one(a, "group", "java-peer-producer-" + ProcessHandle.current().pid()), hook(a));
        p.setNamesrvAddr(ns);
        String namespace = one(a, "namespace", null);
        if (namespace != null) {
            p.setNamespace(namespace);
        }
        p.setSendMsgTimeout(10000);
        p.start();
        emit("{\"event\":\"ready\",\"compressOver\":" + p.getCompressMsgBodyOverHowmuch() + "}");
        String topic = one(a, "topic", null);
        String tag = one(a, "tag", "");
        String keys = one(a, "keys", "");
        String[] sizes = one(a, "sizes", "32").split(",");
        for (int i = 0; i < sizes.length; i++) {
            byte[] body = body(i, Integer.parseInt(sizes[i].trim()));
            Message m = new Message(topic, tag, keys, body);
            for (String kv : a.getOrDefault("prop", List.of())) {
                int eq = kv.indexOf('=');
                m.putUserProperty(kv.substring(0, eq), kv.substring(eq + 1));
            }
            m.putUserProperty("idx", Integer.toString(i));
            SendResult r = p.send(m);
            emit("{\"event\":\"sent\",\"idx\":" + i
                    + ",\"msgId\":" + q(r.getMsgId())
                    + ",\"offsetMsgId\":" + q(r.getOffsetMsgId())
                    + ",\"status\":" + q(r.getSendStatus().name())
                    + ",\"queueId\":" + r.getMessageQueue().getQueueId()
                    + ",\"queueOffset\":" + r.getQueueOffset()
                    + ",\"len\":" + body.length
                    + ",\"body\":" + q(Base64.getEncoder().encodeToString(body)) + "}");
        }
        p.shutdown();
        emit("{\"event\":\"done\",\"sent\":" + sizes.length + "}");
    }

    static byte[] body(int i, int size) {
        byte[] b = new byte[size];
        byte[] head = ("java-" + i + "-").getBytes(StandardCharsets.UTF_8);
        for (int k = 0; k < size; k++) {
            b[k] = k < head.length ? head[k] : (byte) ((k * 7 + i) % 251);
        }
        return b;
    }

    static void consume(Map<String, List<String>> a, String ns) throws Exception {
        DefaultMQPushConsumer c = new DefaultMQPushConsumer(one(a, "group", null), hook(a));
        c.setNamesrvAddr(ns);
        String namespace = one(a, "namespace", null);
        if (namespace != null) {
            c.setNamespace(namespace);
        }
        c.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        String topic = one(a, "topic", null);
        String sql = one(a, "sql", null);
        if (sql != null) {
            c.subscribe(topic, MessageSelector.bySql(sql));
        } else {
            c.subscribe(topic, one(a, "tags", "*"));
        }
        int expect = Integer.parseInt(one(a, "expect", "0"));
        int linger = Integer.parseInt(one(a, "linger", "3"));
        String failOnce = one(a, "fail-once-prop", null);
        Set<String> ok = ConcurrentHashMap.newKeySet();
        CountDownLatch enough = new CountDownLatch(1);
        c.registerMessageListener((MessageListenerConcurrently) (msgs, ctx) -> {
            ConsumeConcurrentlyStatus status = ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
            for (MessageExt m : msgs) {
                if (failOnce != null && m.getProperty(failOnce) != null && m.getReconsumeTimes() == 0) {
                    status = ConsumeConcurrentlyStatus.RECONSUME_LATER;
                }
            }
            for (MessageExt m : msgs) {
                emit(delivery(m, status));
                if (status == ConsumeConcurrentlyStatus.CONSUME_SUCCESS) {
                    ok.add(m.getMsgId());
                }
            }
            if (expect > 0 && ok.size() >= expect) {
                enough.countDown();
            }
            return status;
        });
        c.start();
        emit("{\"event\":\"ready\"}");
        if (expect > 0) {
            enough.await();
            Thread.sleep(linger * 1000L);
        } else {
            new CountDownLatch(1).await(); // until the deadline
        }
        emit("{\"event\":\"done\",\"consumed\":" + ok.size() + "}");
        Thread stop = new Thread(c::shutdown);
        stop.start();
        stop.join(3000);
    }

    static String delivery(MessageExt m, ConsumeConcurrentlyStatus status) {
        Map<String, String> user = new TreeMap<>();
        for (Map.Entry<String, String> e : m.getProperties().entrySet()) {
            if (!MessageConst.STRING_HASH_SET.contains(e.getKey())) {
                user.put(e.getKey(), e.getValue());
            }
        }
        StringBuilder props = new StringBuilder("{");
        for (Map.Entry<String, String> e : user.entrySet()) {
            if (props.length() > 1) {
                props.append(',');
            }
            props.append(q(e.getKey())).append(':').append(q(e.getValue()));
        }
        props.append('}');
        byte[] body = m.getBody() == null ? new byte[0] : m.getBody();
        return "{\"event\":\"delivered\""
                + ",\"msgId\":" + q(m.getMsgId())
                + ",\"offsetMsgId\":" + q(m instanceof MessageClientExt ce ? ce.getOffsetMsgId() : "")
                + ",\"topic\":" + q(m.getTopic())
                + ",\"tags\":" + q(m.getTags())
                + ",\"keys\":" + q(m.getKeys())
                + ",\"props\":" + props
                + ",\"reconsumeTimes\":" + m.getReconsumeTimes()
                + ",\"sysFlag\":" + m.getSysFlag()
                + ",\"status\":" + q(status.name())
                + ",\"len\":" + body.length
                + ",\"body\":" + q(Base64.getEncoder().encodeToString(body)) + "}";
    }

    static RPCHook hook(Map<String, List<String>> a) {
        String ak = one(a, "ak", null);
        String sk = one(a, "sk", null);
        return ak == null ? null : new AclClientRPCHook(new SessionCredentials(ak, sk));
    }

    static Map<String, List<String>> parse(String[] argv) {
        Map<String, List<String>> a = new HashMap<>();
        for (int i = 1; i < argv.length; i++) {
            if (!argv[i].startsWith("--") || i + 1 >= argv.length) {
                fail("bad argument " + argv[i]);
            }
            a.computeIfAbsent(argv[i].substring(2), k -> new ArrayList<>()).add(argv[++i]);
        }
        return a;
    }

    static String one(Map<String, List<String>> a, String k, String dflt) {
        List<String> v = a.get(k);
        return v == null ? dflt : v.get(v.size() - 1);
    }

    static synchronized void emit(String line) {
        OUT.println(line);
        OUT.flush();
    }

    static void fail(String why) {
        emit("{\"event\":\"error\",\"message\":" + q(why) + "}");
        Runtime.getRuntime().halt(1);
    }

    /** A JSON string literal (null → ""). */
    static String q(String s) {
        if (s == null) {
            return "\"\"";
        }
        StringBuilder b = new StringBuilder("\"");
        for (char ch : s.toCharArray()) {
            switch (ch) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                default -> {
                    if (ch < 0x20) {
                        b.append(String.format("\\u%04x", (int) ch));
                    } else {
                        b.append(ch);
                    }
                }
            }
        }
        return b.append('"').toString();
    }
}
