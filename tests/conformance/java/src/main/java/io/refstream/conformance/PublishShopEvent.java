package io.refstream.conformance;

import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.time.Instant;
import java.util.Properties;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.generic.GenericRecordBuilder;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;

/** A shop publishes one order to refstream: Avro single-object encoding, keyed by shop. */
public final class PublishShopEvent {

    /** The record as Avro single-object encoding: C3 01, the schema's fingerprint, the body. */
    public static byte[] encode(GenericRecord event) throws IOException {
        BinaryMessageEncoder<GenericRecord> encoder =
                new BinaryMessageEncoder<>(GenericData.get(), event.getSchema());
        ByteBuffer buffer = encoder.encode(event);
        byte[] bytes = new byte[buffer.remaining()];
        buffer.get(bytes);
        return bytes;
    }

    public static KafkaProducer<String, byte[]> producer(String bootstrapServers) {
        Properties config = new Properties();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers);
        config.put(ProducerConfig.ACKS_CONFIG, "all");
        config.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        return new KafkaProducer<>(config, new StringSerializer(), new ByteArraySerializer());
    }

    /** Each event type has its topic (shop.order, shop.click, ...); the key is the shop id. */
    public static void publish(KafkaProducer<String, byte[]> producer, String topic,
                               GenericRecord event) throws Exception {
        String shopId = event.get("shop_id").toString();
        producer.send(new ProducerRecord<>(topic, shopId, encode(event))).get();
    }

    public static void main(String[] args) throws Exception {
        // args: bootstrap servers, path to refstream's schemas/avro/shop_order.v1.avsc,
        // optionally the topic (shop.order unless REFSTREAM_SHOP_TOPIC_PREFIX is changed)
        String topic = args.length > 2 ? args[2] : "shop.order";
        Schema orderSchema = new Schema.Parser().parse(new File(args[1]));
        GenericRecord order = new GenericRecordBuilder(orderSchema)
                .set("event_id", "e-81")
                .set("event_type", "order")
                .set("shop_id", "shop-001")
                .set("occurred_at", Instant.parse("2026-10-03T12:30:00Z").toEpochMilli())
                .set("order_id", "o-17")
                .set("customer_id", "cust-000042")
                .set("amount_minor", 4599L)   // integer minor units: 45.99
                .set("currency", "EUR")
                .set("ip", "203.0.113.9")
                .build();                     // optional fields default to null
        try (KafkaProducer<String, byte[]> producer = producer(args[0])) {
            publish(producer, topic, order);
        }
    }
}
